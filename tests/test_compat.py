"""/push/{username} as message-pusher documents it: its README's own examples run unchanged against
a real server, its token forms, `to` reaching a wecom_app channel, and its answers and statuses."""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests
from fakes.app_services import WeComAppFake
from support.server import ServerProcess

FINAL = ("delivered", "failed", "partially_failed", "cancelled")

# message-pusher's README, "Bash 示例", verbatim but for the three values it tells you to set.
README_BASH = """#!/bin/bash

MESSAGE_PUSHER_SERVER="{server}"
MESSAGE_PUSHER_USERNAME="{username}"
MESSAGE_PUSHER_TOKEN="{token}"

function send_message {{
  # POST Form
  curl -s -X POST "$MESSAGE_PUSHER_SERVER/push/$MESSAGE_PUSHER_USERNAME" \\
    -d "title=$1&description=$2&content=$3&token=$MESSAGE_PUSHER_TOKEN" \\
    >/dev/null
}}

function send_message_with_json {{
  # POST JSON
  curl -s -X POST "$MESSAGE_PUSHER_SERVER/push/$MESSAGE_PUSHER_USERNAME" \\
    -H 'Content-Type: application/json' \\
    -d '{{"title":"'"$1"'","desp":"'"$2"'", "content":"'"$3"'", "token":"'"$MESSAGE_PUSHER_TOKEN"'"}}' \\
    >/dev/null
}}

"""

# Its "另一个版本": GET with the text from stdin, to a named channel.
README_BASH_SENDMSG = """
MESSAGE_PUSHER_SERVER="{server}"
MESSAGE_PUSHER_USERNAME="{username}"
MESSAGE_PUSHER_TOKEN="{token}"
MESSAGE_PUSHER_CHANNEL="{channel}"

sendmsg() {{
    if [ -t 0 ]; then
        local param="$*"
    else
        local param=$(</dev/stdin)
    fi
    curl -s -o /dev/null --get --data-urlencode "content=${{param}}" "$MESSAGE_PUSHER_SERVER/push/$MESSAGE_PUSHER_USERNAME?channel=$MESSAGE_PUSHER_CHANNEL&token=$MESSAGE_PUSHER_TOKEN"
}}
"""

# Its "Python 示例", verbatim but for the three values.
README_PYTHON = """import requests

SERVER = "{server}"
USERNAME = "{username}"
TOKEN = "{token}"


def send_message(title, description, content):
    # GET 方式
    # res = requests.get(f"{{SERVER}}/push/{{USERNAME}}?title={{title}}"
    #                    f"&description={{description}}&content={{content}}&token={{TOKEN}}")

    # POST 方式
    res = requests.post(f"{{SERVER}}/push/{{USERNAME}}", json={{
        "title": title,
        "description": description,
        "content": content,
        "token": TOKEN
    }})
    res = res.json()
    if res["success"]:
        return None
    else:
        return res["message"]


error = send_message("标题", "描述", "**Markdown 内容**")
if error:
    print(error)
"""


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One server for the module (starts are the slow part), a user `mpuser`, a key, a channel."""
    server = ServerProcess(
        tmp_path_factory.mktemp("compat"),
        {"MP_SECURITY__ALLOW_PRIVATE_NETWORKS": "true", "MP_RETRY__BASE_DELAY_SECONDS": "0.2"},
    ).start()
    server.create_user("mpuser")
    key = server.create_key("mpuser", scopes="messages:send,messages:read,channels:write")
    api = server.client(key)
    r = api.post(
        "/api/v1/channels",
        json={
            "name": "hook",
            "type": "webhook",
            "config": {"url": "http://127.0.0.1:9/"},
            "default": True,
        },
    )
    assert r.status_code == 201, r.text
    yield server, api, key, r.json()["id"]
    server.stop()


@pytest.fixture
def setup(shared, sink):
    """mpuser's default channel `hook` is a webhook to this test's sink."""
    server, api, key, hook_id = shared
    r = api.patch(f"/api/v1/channels/{hook_id}", json={"config": {"url": sink.url + "/in"}})
    assert r.status_code == 200, r.text
    return server, api, key


def bodies(sink, count: int) -> list[dict]:
    return [r["body"] for r in sink.wait_for(lambda rs: len(rs) >= count)]


def run_bash(script: str) -> None:
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_the_readme_bash_form_example_delivers_title_and_content(setup, sink) -> None:
    server, _api, key = setup
    script = README_BASH.format(server=server.url, username="mpuser", token=key)
    run_bash(script + "send_message 'title' 'description' 'content'\n")
    (body,) = bodies(sink, 1)
    assert (body["title"], body["body"], body["format"]) == ("title", "content", "markdown")


def test_the_readme_bash_json_example_delivers_desp_as_the_body(setup, sink) -> None:
    server, _api, key = setup
    script = README_BASH.format(server=server.url, username="mpuser", token=key)
    run_bash(script + "send_message_with_json '磁盘告警' 'db-1 的磁盘使用率 91%' ''\n")
    (body,) = bodies(sink, 1)
    assert (body["title"], body["body"]) == ("磁盘告警", "db-1 的磁盘使用率 91%")


def test_the_readme_sendmsg_example_sends_stdin_to_the_named_channel(setup, sink) -> None:
    server, _api, key = setup
    script = README_BASH_SENDMSG.format(
        server=server.url, username="mpuser", token=key, channel="hook"
    )
    run_bash(script + "echo 'Linux db-1 6.1.0 x86_64 & more' | sendmsg\n")
    (body,) = bodies(sink, 1)
    assert body["body"] == "Linux db-1 6.1.0 x86_64 & more"
    assert body["title"] == "Message Pusher"  # message-pusher's title when none is given


def test_the_readme_python_example_delivers_and_reports_no_error(setup, sink) -> None:
    server, _api, key = setup
    code = README_PYTHON.format(server=server.url, username="mpuser", token=key)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr
    (body,) = bodies(sink, 1)
    assert (body["title"], body["body"]) == ("标题", "**Markdown 内容**")


@pytest.mark.parametrize("header", ["Bearer {key}", "{key}"])
def test_the_token_may_come_in_the_authorization_header_with_or_without_bearer(
    setup, sink, header
) -> None:
    server, api, key = setup
    r = requests.post(
        f"{server.url}/push/mpuser",
        data={"title": "header token", "description": "d"},
        headers={"Authorization": header.format(key=key)},
        timeout=10,
    )
    assert r.status_code == 200 and r.json()["success"] is True, r.text
    assert bodies(sink, 1)[0]["title"] == "header token"
    assert api.wait_message(int(r.json()["uuid"]), FINAL)["status"] == "delivered"


def test_a_multipart_form_is_read_like_curl_dash_f_sends_it(setup, sink) -> None:
    server, _api, key = setup
    fields = {"title": "多部分", "description": "multipart body", "token": key}
    r = requests.post(
        f"{server.url}/push/mpuser",
        files={name: (None, value) for name, value in fields.items()},
        timeout=10,
    )
    assert r.status_code == 200 and r.json()["success"] is True, r.text
    (body,) = bodies(sink, 1)
    assert (body["title"], body["body"]) == ("多部分", "multipart body")
    broken = requests.post(
        f"{server.url}/push/mpuser",
        data=b"--x\r\nnot a part",
        headers={"Content-Type": "multipart/form-data; boundary=x"},
        timeout=10,
    )
    assert broken.status_code == 200 and broken.json()["success"] is False, broken.text


def test_a_token_in_the_query_serves_a_json_post_without_one(setup, sink) -> None:
    server, _api, key = setup
    r = requests.post(
        f"{server.url}/push/mpuser?token={key}", json={"title": "q", "async": True}, timeout=10
    )
    assert r.json()["success"] is True, r.text
    assert bodies(sink, 1)[0]["title"] == "q"


def test_answers_and_statuses_are_those_of_message_pusher(setup) -> None:
    server, _api, key = setup
    url = f"{server.url}/push/mpuser"
    missing = requests.get(url, params={"title": "x"}, timeout=10)
    assert missing.status_code == 401
    assert missing.json()["success"] is False and "token" in missing.json()["message"]
    wrong = requests.get(url, params={"title": "x", "token": "mp_nope_nope"}, timeout=10)
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthorized"
    # Failures after authentication are 200 with success false, as message-pusher answers them.
    unknown = requests.get(url, params={"title": "x", "token": key, "channel": "nope"}, timeout=10)
    assert unknown.status_code == 200 and unknown.json()["success"] is False
    assert "nope" in unknown.json()["message"]
    broken = requests.post(
        url, data=b"{not json", headers={"Content-Type": "application/json"}, timeout=10
    )
    assert broken.status_code == 200 and broken.json()["success"] is False
    assert broken.json()["error"]["code"] == "malformed_json"
    listed = requests.post(url, json={"token": key, "to": ["a", "b"]}, timeout=10)
    assert listed.status_code == 200 and listed.json()["message"].startswith("to: must be a string")
    empty = requests.post(url, data=b"", timeout=10)

    assert empty.status_code == 200 and "empty" in empty.json()["message"]
    bad_url = requests.get(url, params={"token": key, "url": "ftp://x"}, timeout=10)
    assert bad_url.status_code == 200 and "url" in bad_url.json()["message"]


def test_to_reaches_the_recipients_of_a_wecom_app_channel_and_a_webhook_ignores_it_with_a_note(
    setup, sink
) -> None:
    server, api, key = setup
    with WeComAppFake("ww-corp", "agent-secret-1", 1000002, ["ZhangSan", "LiSi", "WangWu"]) as fake:
        r = api.post(
            "/api/v1/channels",
            json={
                "name": "corp",
                "type": "wecom_app",
                "config": {
                    "corp_id": "ww-corp",
                    "agent_id": 1000002,
                    "agent_secret": "agent-secret-1",
                    "to_user": "ZhangSan",
                    "base_url": fake.url,
                },
            },
        )
        assert r.status_code == 201, r.text
        sent = requests.post(
            f"{server.url}/push/mpuser",
            json={
                "title": "值班",
                "description": "今晚值班",
                "channel": "corp",
                "to": "LiSi|WangWu",
            },
            headers={"Authorization": key},
            timeout=10,
        )
        assert sent.json() == {"success": True, "message": "", "uuid": sent.json()["uuid"]}
        message = api.wait_message(int(sent.json()["uuid"]), FINAL)
        assert message["status"] == "delivered", message
        (request,) = fake.sends
        assert request.json()["touser"] == "LiSi|WangWu"
    ignored = requests.get(
        f"{server.url}/push/mpuser",
        params={"title": "t", "token": key, "to": "@all"},
        timeout=10,
    )
    assert ignored.json()["success"] is True
    assert "to was ignored by hook (webhook)" in ignored.json()["message"]
