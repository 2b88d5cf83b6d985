"""Apprise: any Apprise URL, tried here with json:// against a local receiver."""

from __future__ import annotations

import pytest
from fakes.channel_services import Reply, WebhookSink

from messagepusher.actors.channels import ChannelConfigError, build_channel
from messagepusher.actors.channels.apprise_channel import http_target

# apprise itself still imports the deprecated imghdr module.
pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")


def json_url(sink: WebhookSink, path: str = "/apprise") -> str:
    return sink.url.replace("http://", "json://") + path


def test_apprise_json_url_delivers_title_and_body(ctx, make_message) -> None:
    with WebhookSink() as sink:
        result = build_channel("apprise", {"urls": [json_url(sink)]}).send(make_message(), ctx)
    assert result.status == "sent", result.detail
    body = sink.requests[0].json()
    assert sink.requests[0].path == "/apprise"
    assert body["title"] == "磁盘告警 Disk alert"
    assert body["message"].startswith("服务器 db-1")


def test_apprise_failure_is_retried_and_names_the_url_by_index_only(ctx, make_message) -> None:
    with WebhookSink() as sink:
        sink.script(Reply(500, "boom"))
        url = json_url(sink, "/secret-path")
        result = build_channel("apprise", {"urls": [url]}).send(make_message(), ctx)
    assert result.status == "retry"
    assert "urls[0] (json://…)" in result.detail
    assert "secret-path" not in result.detail


def test_apprise_http_targets_obey_the_private_network_rule(guarded_ctx, make_message) -> None:
    with WebhookSink() as sink:
        result = build_channel("apprise", {"urls": [json_url(sink)]}).send(
            make_message(), guarded_ctx
        )
        assert sink.requests == []
    assert result.status == "permanent"
    assert "allow_private_networks" in result.detail


def test_only_json_xml_and_form_urls_have_an_http_target() -> None:
    assert (
        http_target("jsons://user:pw@hooks.example:8443/a/b?x=1")
        == "https://hooks.example:8443/a/b"
    )
    assert http_target("form://10.0.0.5/submit") == "http://10.0.0.5/submit"
    assert http_target("mailto://user:pass@gmail.com") is None
    assert http_target("tgram://123456:abc/987") is None


def test_an_url_apprise_cannot_load_is_a_config_error_that_does_not_echo_it() -> None:
    with pytest.raises(ChannelConfigError) as raised:
        build_channel("apprise", {"urls": ["nosuchservice://secret-token@host"]})
    assert raised.value.field == "config.urls"
    assert "urls[0]" in str(raised.value)
    assert "secret-token" not in str(raised.value)
