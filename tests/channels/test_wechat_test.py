"""微信测试号: the token fetch, one template message per open_id, errcode classes, token expiry."""

from __future__ import annotations

import pytest
from fakes.app_services import WeChatTestFake
from fakes.channel_services import Reply

from messagepusher.actors.channels import ChannelConfigError, build_channel
from messagepusher.actors.channels.http_common import Answer
from messagepusher.actors.channels.wechat_test import read_token

APP_ID, SECRET, TEMPLATE = "wx8a1b2c3d4e5f6a7b", "0f1e2d3c4b5a69788796a5b4c3d2e1f0", "tpl-alert"
FOLLOWERS = ["oAbc-follower-1", "oAbc-follower-2"]


@pytest.fixture
def fake():
    with WeChatTestFake(APP_ID, SECRET, TEMPLATE, FOLLOWERS) as fake:
        yield fake


def channel(fake, **extra):
    config = {
        "app_id": APP_ID,
        "app_secret": SECRET,
        "template_id": TEMPLATE,
        "open_id": FOLLOWERS[0],
        "base_url": fake.url,
        **extra,
    }
    return build_channel("wechat_test", config)


def test_wechat_test_fetches_a_token_and_sends_a_template_message(
    db, fake, ctx, make_message
) -> None:
    result = channel(fake).send(make_message(url="https://example.com/r/1"), ctx)
    assert result.status == "sent", result.detail
    assert result.remote_id == "200228332"
    (token_request,) = fake.token_requests
    assert token_request.query == {
        "grant_type": "client_credential",
        "appid": APP_ID,
        "secret": SECRET,
    }
    (send,) = fake.sends
    assert send.query == {"access_token": "wx-token-1"}
    body = send.json()
    assert body["touser"] == FOLLOWERS[0] and body["template_id"] == TEMPLATE
    assert body["url"] == "https://example.com/r/1"
    assert body["data"]["title"] == {"value": "磁盘告警 Disk alert"}
    assert body["data"]["description"]["value"].startswith("服务器 db-1")
    assert body["data"]["text"] == body["data"]["description"]
    assert body["data"]["content"]["value"].endswith("https://example.com/r/1")


def test_the_token_is_reused_for_the_next_sends(db, fake, ctx, make_message) -> None:
    for _ in range(3):
        assert channel(fake).send(make_message(), ctx).status == "sent"
    assert fake.tokens.fetches == 1 and len(fake.sends) == 3


def test_several_open_ids_get_one_message_each_and_all_msgids_are_kept(
    db, fake, ctx, make_message
) -> None:
    result = channel(fake, open_id="|".join(FOLLOWERS)).send(make_message(), ctx)
    assert result.status == "sent" and result.parts == 2
    assert [r.json()["touser"] for r in fake.sends] == FOLLOWERS
    assert result.remote_id == "200228332,200228333"


def test_the_message_recipients_replace_the_configured_open_ids(
    db, fake, ctx, make_message
) -> None:
    result = channel(fake).send(make_message(recipients=(FOLLOWERS[1],)), ctx)
    assert result.status == "sent"
    assert fake.sends[0].json()["touser"] == FOLLOWERS[1]


def test_a_token_that_expired_mid_run_is_fetched_again_once_then_the_send_succeeds(
    db, fake, ctx, make_message
) -> None:
    assert channel(fake).send(make_message(), ctx).status == "sent"
    fake.tokens.expire_all()
    result = channel(fake).send(make_message(), ctx)
    assert result.status == "sent", result.detail
    assert fake.tokens.fetches == 2
    assert [r.query["access_token"] for r in fake.sends] == [
        "wx-token-1",
        "wx-token-1",
        "wx-token-2",
    ]
    assert "fetched again" in " ".join(result.notes)


@pytest.mark.parametrize("errcode", [40001, 40014, 42001])
def test_each_token_refusal_code_triggers_one_refresh(db, fake, ctx, make_message, errcode) -> None:
    assert channel(fake).send(make_message(), ctx).status == "sent"
    fake.script(Reply.json({"errcode": errcode, "errmsg": "token refused"}))
    assert channel(fake).send(make_message(), ctx).status == "sent"
    assert fake.tokens.fetches == 2


def test_a_token_refused_again_after_the_refresh_is_not_fetched_a_third_time(
    db, fake, ctx, make_message
) -> None:
    fake.script(*[Reply.json({"errcode": 42001, "errmsg": "access_token expired"})] * 2)
    result = channel(fake).send(make_message(), ctx)
    assert result.status == "permanent" and "errcode=42001" in result.detail
    assert fake.tokens.fetches == 2


@pytest.mark.parametrize(
    ("extra", "errcode", "hint"),
    [
        ({"open_id": "oNot-a-follower"}, 40003, "not a follower"),
        ({"template_id": "tpl-gone"}, 40037, "template_id is not valid"),
    ],
)
def test_wrong_recipient_or_template_is_permanent(
    db, fake, ctx, make_message, extra, errcode, hint
) -> None:
    result = channel(fake, **extra).send(make_message(), ctx)
    assert result.status == "permanent"
    assert f"errcode={errcode}" in result.detail and hint in result.detail


@pytest.mark.parametrize(
    ("extra", "errcode"), [({"app_id": "wx-wrong"}, 40013), ({"app_secret": "wrong-secret"}, 40125)]
)
def test_a_wrong_app_id_or_secret_is_permanent_and_says_which(
    db, fake, ctx, make_message, extra, errcode
) -> None:
    result = channel(fake, **extra).send(make_message(), ctx)
    assert result.status == "permanent"
    assert (
        result.detail.startswith("cannot get an access token")
        and f"errcode={errcode}" in result.detail
    )
    assert "wrong-secret" not in result.detail
    assert fake.sends == []


@pytest.mark.parametrize(("errcode", "retry_after"), [(-1, None), (45009, 3600.0)])
def test_busy_and_quota_are_retried(db, fake, ctx, make_message, errcode, retry_after) -> None:
    fake.script(Reply.json({"errcode": errcode, "errmsg": "later"}))
    result = channel(fake).send(make_message(), ctx)
    assert (result.status, result.retry_after) == ("retry", retry_after)


def test_a_relay_that_is_down_is_retried(db, ctx, make_message) -> None:
    with WeChatTestFake(APP_ID, SECRET, TEMPLATE, FOLLOWERS) as gone:
        url = gone.url
    result = build_channel(
        "wechat_test",
        {
            "app_id": APP_ID,
            "app_secret": SECRET,
            "template_id": TEMPLATE,
            "open_id": "o",
            "base_url": url,
        },
    ).send(make_message(), ctx)
    assert result.status == "retry"
    assert result.detail.startswith("cannot get an access token: connection failed")
    assert SECRET not in result.detail


def test_an_odd_expires_in_counts_as_two_hours() -> None:
    for odd in ('"soon"', "null", "-5", "true"):
        got = read_token(Answer(200, f'{{"access_token": "t", "expires_in": {odd}}}'), 0.0)
        assert got == ("t", 7200.0)
    assert read_token(Answer(200, '{"access_token": "t", "expires_in": 600}'), 0.0) == ("t", 600.0)


def test_a_token_answer_without_access_token_is_permanent() -> None:
    result = read_token(Answer(200, '{"errcode": 0, "errmsg": "ok"}'), 0.0)
    assert result.status == "permanent" and "check base_url" in result.detail


def test_open_id_is_required_and_the_error_says_what_it_is() -> None:
    with pytest.raises(ChannelConfigError) as caught:
        build_channel("wechat_test", {"app_id": "a", "app_secret": "s", "template_id": "t"})
    assert caught.value.field == "config.open_id" and "followers" in caught.value.message


def sent_by(server) -> float:
    """This process's count of wechat_test deliveries sent, from its own /metrics."""
    import requests

    text = requests.get(server.url + "/metrics", timeout=10).text
    for line in text.splitlines():
        if (
            line.startswith("messagepusher_deliveries_total{")
            and 'channel_type="wechat_test"' in line
            and 'outcome="sent"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_two_server_processes_fetch_the_access_token_once_between_them(
    server_factory, postgres_url
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    url, _schema = postgres_url
    env = {
        "MP_DATABASE__URL": url,
        "MP_SECURITY__SECRET_KEY": "one key for both processes",
        "MP_SECURITY__ALLOW_PRIVATE_NETWORKS": "true",
    }
    first, second = server_factory(env), server_factory(env)
    with WeChatTestFake(APP_ID, SECRET, TEMPLATE, FOLLOWERS) as fake:
        fake.tokens.hold_seconds = 1.5  # both processes want the token while it is fetched
        key = first.create_key()
        apis = [first.client(key), second.client(key)]
        config = {
            "app_id": APP_ID,
            "app_secret": SECRET,
            "template_id": TEMPLATE,
            "open_id": FOLLOWERS[0],
            "base_url": fake.url,
        }
        r = apis[0].post(
            "/api/v1/channels", json={"name": "wx", "type": "wechat_test", "config": config}
        )
        assert r.status_code == 201, r.text

        def post(i: int) -> int:
            r = apis[i % 2].post("/api/v1/messages", json={"title": f"m{i}", "channels": ["wx"]})
            assert r.status_code == 202, r.text
            return r.json()["id"]

        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(post, range(8)))
        for message_id in ids:
            assert apis[0].wait_message(message_id, ("delivered",), timeout=60)
        assert len(fake.sends) == 8
        assert fake.tokens.fetches == 1
        counts = sent_by(first), sent_by(second)
        assert counts[0] >= 1 and counts[1] >= 1 and sum(counts) == 8, counts
