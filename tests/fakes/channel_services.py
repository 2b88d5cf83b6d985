"""Local fakes of the services the channels talk to: real HTTP (and SMTP) servers on 127.0.0.1.

Each checks what the real one checks, records requests, and answers as scripted or as it would.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import ipaddress
import json
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SIGNATURE_WINDOW_SECONDS = 3600  # DingTalk and Feishu refuse timestamps further than an hour off
HOLD_SECONDS = 10.0  # the longest a hanging reply holds its thread (released at stop)


@dataclass
class Reply:
    """One scripted answer. `hang` answers only when the fake stops (for client timeouts)."""

    status: int = 200
    body: bytes | str | dict | list = b""
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
        return cls(status, data, {"Content-Type": "application/json", **(headers or {})})

    def encoded(self) -> bytes:
        if isinstance(self.body, dict | list):
            return json.dumps(self.body, ensure_ascii=False).encode()
        return self.body.encode() if isinstance(self.body, str) else self.body


@dataclass
class Request:
    """One request as the fake received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased
    body: bytes
    at: float = field(default_factory=time.monotonic)  # arrival, for pacing and retry-after

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode(), keep_blank_values=True).items()}


class Refuse(Exception):
    """Raised by a fake's `check`: the request is wrong, answer as the real service would."""

    def __init__(self, problem: str, reply: Reply):
        super().__init__(problem)
        self.reply = reply


class FakeService:
    """A ThreadingHTTPServer on 127.0.0.1, port 0. Subclasses implement `check` and `success`.

    Scripted replies (`script`) are used in order for requests that pass `check`; without
    one, `success` answers. Every request is kept in `requests`, every refusal in `problems`.
    """

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.problems: list[str] = []
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._released = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeService:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._released.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)

    def script(self, *replies: Reply) -> None:
        self._script.extend(replies)

    def check(self, request: Request) -> None:
        """Raise Refuse when the real service would refuse `request`."""

    def success(self, request: Request) -> Reply:
        return Reply(200, "ok")

    def handle(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
            try:
                self.check(request)
            except Refuse as refusal:
                self.problems.append(str(refusal))
                return refusal.reply
            reply = self._script.popleft() if self._script else self.success(request)
        if reply.hang:
            self._released.wait(HOLD_SECONDS)
        return reply


class _Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        request = Request(
            method=self.command,
            path=parts.path,
            query={k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()},
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self.rfile.read(length),
        )
        reply = self.server.fake.handle(request)  # type: ignore[attr-defined]
        body = reply.encoded()
        try:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test): nobody to answer

    do_GET = do_POST = do_PUT = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test output is the record."""


def _expect(condition: bool, problem: str, reply: Reply) -> None:
    if not condition:
        raise Refuse(problem, reply)


def _json_body(request: Request, reply: Reply) -> dict:
    try:
        data = request.json()
    except ValueError:
        raise Refuse("body is not JSON", reply) from None
    _expect(isinstance(data, dict), "body is not a JSON object", reply)
    return data


# --- the services ---------------------------------------------------------------------------


class WeComFake(FakeService):
    """企业微信群机器人: POST /cgi-bin/webhook/send?key=KEY."""

    def __init__(self, key: str):
        super().__init__()
        self.key = key

    def check(self, request: Request) -> None:
        invalid = Reply.json({"errcode": 93000, "errmsg": "invalid webhook url"})
        _expect(
            request.path == "/cgi-bin/webhook/send", f"path {request.path}", Reply(404, "not found")
        )
        _expect(request.query.get("key") == self.key, "wrong key", invalid)
        data = _json_body(request, Reply.json({"errcode": 40001, "errmsg": "invalid json"}))
        msgtype = data.get("msgtype")
        _expect(
            msgtype in ("text", "markdown"),
            f"msgtype {msgtype}",
            Reply.json({"errcode": 40008, "errmsg": "invalid message type"}),
        )
        content = data.get(msgtype, {}).get("content")
        _expect(
            isinstance(content, str) and content != "",
            "no content",
            Reply.json({"errcode": 44004, "errmsg": "empty content"}),
        )
        limit = 2048 if msgtype == "text" else 4096
        too_long = Reply.json({"errcode": 40058, "errmsg": f"content exceed max length {limit}"})
        _expect(len(content.encode()) <= limit, "content too long", too_long)

    def success(self, request: Request) -> Reply:
        return Reply.json({"errcode": 0, "errmsg": "ok"})


def dingtalk_sign(secret: str, timestamp_ms: str) -> str:
    """DingTalk's published algorithm (before URL-encoding), written out again for the fake."""
    mac = hmac.new(
        secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode(), digestmod=hashlib.sha256
    )
    return base64.b64encode(mac.digest()).decode()


class DingTalkFake(FakeService):
    """钉钉自定义机器人: POST /robot/send?access_token=T&timestamp=MS&sign=S."""

    def __init__(self, access_token: str, secret: str | None = None):
        super().__init__()
        self.access_token = access_token
        self.secret = secret

    def check(self, request: Request) -> None:
        _expect(request.path == "/robot/send", f"path {request.path}", Reply(404, "not found"))
        no_token = Reply.json({"errcode": 300001, "errmsg": "token is not exist"})
        _expect(
            request.query.get("access_token") == self.access_token, "wrong access_token", no_token
        )
        if self.secret:
            refused = Reply.json(
                {
                    "errcode": 310000,
                    "errmsg": "sign not match, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]",
                }
            )
            timestamp = request.query.get("timestamp", "")
            _expect(timestamp.isdigit(), "no timestamp", refused)
            off = abs(time.time() * 1000 - int(timestamp))
            _expect(
                off <= SIGNATURE_WINDOW_SECONDS * 1000, f"timestamp {off / 1000:.0f} s off", refused
            )
            expected = dingtalk_sign(self.secret, timestamp)
            _expect(request.query.get("sign") == expected, "sign mismatch", refused)
        data = _json_body(request, Reply.json({"errcode": 40035, "errmsg": "缺少参数 json"}))
        msgtype = data.get("msgtype")
        bad = Reply.json({"errcode": 40035, "errmsg": "缺少参数 content"})
        if msgtype == "text":
            _expect(bool(data.get("text", {}).get("content")), "no text.content", bad)
        else:
            _expect(msgtype == "markdown", f"msgtype {msgtype}", bad)
            markdown = data.get("markdown", {})
            _expect(
                bool(markdown.get("title")) and bool(markdown.get("text")),
                "markdown needs title and text",
                bad,
            )

    def success(self, request: Request) -> Reply:
        return Reply.json({"errcode": 0, "errmsg": "ok"})


def feishu_sign(secret: str, timestamp_s: str) -> str:
    """Feishu's published algorithm: HMAC-SHA256 keyed by "timestamp\\nsecret" over nothing."""
    mac = hmac.new(f"{timestamp_s}\n{secret}".encode(), digestmod=hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


class FeishuFake(FakeService):
    """飞书/Lark 自定义机器人: POST /open-apis/bot/v2/hook/TOKEN."""

    def __init__(self, token: str, secret: str | None = None):
        super().__init__()
        self.token = token
        self.secret = secret

    def check(self, request: Request) -> None:
        invalid = Reply.json(
            {
                "code": 19001,
                "msg": "param invalid: incoming webhook access token invalid",
                "data": {},
            }
        )
        _expect(
            request.path == f"/open-apis/bot/v2/hook/{self.token}", f"path {request.path}", invalid
        )
        data = _json_body(
            request, Reply.json({"code": 9499, "msg": "Bad Request", "data": {}}, 400)
        )
        if self.secret:
            refused = Reply.json(
                {
                    "code": 19021,
                    "msg": "sign match fail or timestamp is not within one hour from current time",
                    "data": {},
                }
            )
            timestamp = str(data.get("timestamp", ""))
            _expect(timestamp.isdigit(), "no timestamp", refused)
            off = abs(time.time() - int(timestamp))
            _expect(off <= SIGNATURE_WINDOW_SECONDS, f"timestamp {off:.0f} s off", refused)
            _expect(
                data.get("sign") == feishu_sign(self.secret, timestamp), "sign mismatch", refused
            )
        bad = Reply.json({"code": 19002, "msg": "params error, msg_type need", "data": {}})
        if data.get("msg_type") == "text":
            _expect(bool(data.get("content", {}).get("text")), "no content.text", bad)
        else:
            _expect(data.get("msg_type") == "interactive", f"msg_type {data.get('msg_type')}", bad)
            _expect(isinstance(data.get("card"), dict), "no card", bad)

    def success(self, request: Request) -> Reply:
        return Reply.json({"code": 0, "data": {}, "msg": "success"})


class BarkFake(FakeService):
    """Bark server: POST /push with JSON."""

    def __init__(self, device_key: str):
        super().__init__()
        self.device_key = device_key

    def check(self, request: Request) -> None:
        _expect(
            request.path == "/push",
            f"path {request.path}",
            Reply.json({"code": 404, "message": "Not Found"}, 404),
        )
        data = _json_body(request, Reply.json({"code": 400, "message": "request bind failed"}, 400))
        no_device = Reply.json(
            {
                "code": 400,
                "message": f"failed to get device token: failed to get [{data.get('device_key')}] device token from database",
                "timestamp": 1,
            },
            400,
        )
        _expect(data.get("device_key") == self.device_key, "wrong device_key", no_device)
        bad_level = Reply.json({"code": 400, "message": "invalid level"}, 400)
        _expect(
            data.get("level") in ("active", "timeSensitive", "passive", "critical"),
            "bad level",
            bad_level,
        )

    def success(self, request: Request) -> Reply:
        return Reply.json({"code": 200, "message": "success", "timestamp": int(time.time())})


class ServerChanFake(FakeService):
    """Server酱 Turbo: POST /SENDKEY.send with a form."""

    def __init__(self, sendkey: str):
        super().__init__()
        self.sendkey = sendkey

    def check(self, request: Request) -> None:
        bad_key = Reply.json({"code": 40001, "message": "bad pushtoken", "data": None})
        _expect(request.path == f"/{self.sendkey}.send", f"path {request.path}", bad_key)
        form_type = request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        )
        _expect(form_type, "not a form", Reply.json({"code": 40002, "message": "bad request"}))
        form = request.form()
        _expect(
            bool(form.get("title")),
            "no title",
            Reply.json({"code": 20001, "message": "title can not be empty"}),
        )
        _expect(
            len(form["title"]) <= 32,
            "title too long",
            Reply.json({"code": 20002, "message": "title too long"}),
        )

    def success(self, request: Request) -> Reply:
        data = {"pushid": "1", "readkey": "k", "error": "SUCCESS", "errno": 0}
        return Reply.json({"code": 0, "message": "", "data": data})


class PushPlusFake(FakeService):
    """推送加: POST /send with JSON."""

    def __init__(self, token: str):
        super().__init__()
        self.token = token

    def check(self, request: Request) -> None:
        _expect(request.path == "/send", f"path {request.path}", Reply(404, "not found"))
        data = _json_body(request, Reply.json({"code": 400, "msg": "请求参数错误", "data": None}))
        _expect(
            data.get("token") == self.token,
            "wrong token",
            Reply.json({"code": 903, "msg": "无效的用户token", "data": None}),
        )
        _expect(
            bool(data.get("content")),
            "no content",
            Reply.json({"code": 400, "msg": "内容不能为空", "data": None}),
        )
        _expect(
            data.get("template") in ("html", "txt", "json", "markdown"),
            "bad template",
            Reply.json({"code": 400, "msg": "模板错误", "data": None}),
        )

    def success(self, request: Request) -> Reply:
        return Reply.json({"code": 200, "msg": "请求成功", "data": "d0f6a1b2c3"})


class TelegramFake(FakeService):
    """Bot API: POST /bot<token>/sendMessage."""

    def __init__(self, bot_token: str, chat_id: str):
        super().__init__()
        self.bot_token = bot_token
        self.chat_id = chat_id
        self.texts: list[str] = []

    def check(self, request: Request) -> None:
        unauthorized = Reply.json(
            {"ok": False, "error_code": 401, "description": "Unauthorized"}, 401
        )
        _expect(
            request.path == f"/bot{self.bot_token}/sendMessage",
            f"path {request.path}",
            unauthorized,
        )
        data = _json_body(
            request,
            Reply.json(
                {
                    "ok": False,
                    "error_code": 400,
                    "description": "Bad Request: message text is empty",
                },
                400,
            ),
        )
        not_found = Reply.json(
            {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}, 400
        )
        _expect(str(data.get("chat_id")) == self.chat_id, "wrong chat_id", not_found)
        _expect(
            data.get("parse_mode") in (None, "HTML", "MarkdownV2"),
            "bad parse_mode",
            Reply.json(
                {
                    "ok": False,
                    "error_code": 400,
                    "description": "Bad Request: unsupported parse_mode",
                },
                400,
            ),
        )
        parsed = _telegram_html_text(data.get("text", ""))
        too_long = Reply.json(
            {"ok": False, "error_code": 400, "description": "Bad Request: message is too long"}, 400
        )
        _expect(
            0 < len(parsed.encode("utf-16-le")) // 2 <= 4096, "text empty or too long", too_long
        )
        self.texts.append(parsed)

    def success(self, request: Request) -> Reply:
        result = {
            "message_id": len(self.requests),
            "chat": {"id": self.chat_id},
            "date": int(time.time()),
        }
        return Reply.json({"ok": True, "result": result})


class _TelegramEntities(HTMLParser):
    """Telegram's HTML parse mode: the text after entity parsing, refusing unsupported tags."""

    ALLOWED = frozenset({"b", "strong", "i", "em", "u", "s", "a", "code", "pre", "blockquote"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.pieces: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in self.ALLOWED:
            description = f'Bad Request: can\'t parse entities: Unsupported start tag "{tag}"'
            reply = Reply.json({"ok": False, "error_code": 400, "description": description}, 400)
            raise Refuse(f"unsupported tag {tag}", reply)

    def handle_data(self, data: str) -> None:
        self.pieces.append(data)


def _telegram_html_text(markup: str) -> str:
    parser = _TelegramEntities()
    parser.feed(markup)
    parser.close()
    return "".join(parser.pieces)


class DiscordFake(FakeService):
    """Discord: POST /api/webhooks/ID/TOKEN, 204 on success."""

    def __init__(self, webhook_id: str, token: str):
        super().__init__()
        self.path = f"/api/webhooks/{webhook_id}/{token}"

    def check(self, request: Request) -> None:
        unknown = Reply.json({"message": "Unknown Webhook", "code": 10015}, 404)
        _expect(request.path == self.path, f"path {request.path}", unknown)
        data = _json_body(
            request, Reply.json({"message": "Cannot send an empty message", "code": 50006}, 400)
        )
        content = data.get("content") or ""
        _expect(
            0 < len(content) <= 2000,
            "content empty or too long",
            Reply.json({"content": ["Must be 2000 or fewer in length."]}, 400),
        )

    def success(self, request: Request) -> Reply:
        return Reply(204)


class SlackFake(FakeService):
    """Slack incoming webhook: POST /services/T…/B…/…, body "ok"."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def check(self, request: Request) -> None:
        _expect(request.path == self.path, f"path {request.path}", Reply(404, "no_service"))
        data = _json_body(request, Reply(400, "invalid_payload"))
        _expect(bool(data.get("text")), "no text", Reply(400, "no_text"))
        _expect(len(data["text"]) <= 40000, "text too long", Reply(400, "msg_too_long"))

    def success(self, request: Request) -> Reply:
        return Reply(200, "ok")


class NtfyFake(FakeService):
    """ntfy: POST / with a JSON message naming its topic."""

    def __init__(self, topic: str, token: str | None = None):
        super().__init__()
        self.topic = topic
        self.token = token

    def check(self, request: Request) -> None:
        if self.token:
            unauthorized = Reply.json({"code": 40101, "http": 401, "error": "unauthorized"}, 401)
            _expect(
                request.headers.get("authorization") == f"Bearer {self.token}",
                "wrong token",
                unauthorized,
            )
        _expect(
            request.path == "/",
            f"path {request.path}",
            Reply.json({"code": 40401, "http": 404, "error": "page not found"}, 404),
        )
        data = _json_body(
            request,
            Reply.json(
                {"code": 40024, "http": 400, "error": "invalid request: body must be JSON"}, 400
            ),
        )
        _expect(
            data.get("topic") == self.topic,
            "wrong topic",
            Reply.json({"code": 40009, "http": 400, "error": "invalid topic"}, 400),
        )
        _expect(
            data.get("priority", 3) in (1, 2, 3, 4, 5),
            "bad priority",
            Reply.json({"code": 40007, "http": 400, "error": "invalid priority"}, 400),
        )
        _expect(
            len(data.get("message", "").encode()) <= 4096,
            "message too long",
            Reply.json({"code": 41301, "http": 413, "error": "too large"}, 413),
        )

    def success(self, request: Request) -> Reply:
        data = request.json()
        return Reply.json(
            {
                "id": "hwQ2YpKdmg",
                "time": int(time.time()),
                "event": "message",
                "topic": self.topic,
                "message": data.get("message"),
            }
        )


class GotifyFake(FakeService):
    """Gotify: POST /message with X-Gotify-Key."""

    def __init__(self, token: str):
        super().__init__()
        self.token = token

    def check(self, request: Request) -> None:
        unauthorized = Reply.json(
            {
                "error": "Unauthorized",
                "errorCode": 401,
                "errorDescription": "you need to provide a valid access token or user credentials to access this api",
            },
            401,
        )
        _expect(request.headers.get("x-gotify-key") == self.token, "wrong token", unauthorized)
        _expect(
            request.path == "/message",
            f"path {request.path}",
            Reply.json({"error": "Not Found", "errorCode": 404}, 404),
        )
        data = _json_body(request, Reply.json({"error": "Bad Request", "errorCode": 400}, 400))
        _expect(
            bool(data.get("message")),
            "no message",
            Reply.json(
                {
                    "error": "Bad Request",
                    "errorCode": 400,
                    "errorDescription": "Field 'message' is required",
                },
                400,
            ),
        )
        _expect(
            isinstance(data.get("priority"), int),
            "bad priority",
            Reply.json({"error": "Bad Request", "errorCode": 400}, 400),
        )

    def success(self, request: Request) -> Reply:
        data = request.json()
        return Reply.json(
            {
                "id": len(self.requests),
                "appid": 1,
                "message": data["message"],
                "title": data.get("title"),
                "priority": data["priority"],
            }
        )


class WebhookSink(FakeService):
    """Any HTTP receiver: accepts every path; with a secret, checks X-MessagePusher-Signature."""

    def __init__(self, secret: str | None = None):
        super().__init__()
        self.secret = secret

    def check(self, request: Request) -> None:
        if self.secret:
            expected = (
                "sha256=" + hmac.new(self.secret.encode(), request.body, hashlib.sha256).hexdigest()
            )
            signature = request.headers.get("x-messagepusher-signature")
            _expect(signature == expected, "bad signature", Reply(401, "bad signature"))


# --- SMTP -----------------------------------------------------------------------------------


@dataclass
class SmtpScript:
    """How the fake SMTP server answers: refused recipients, a DATA reply, accepted logins."""

    refuse_recipients: dict[str, str] = field(default_factory=dict)  # address -> "550 …"
    data_reply: str = "250 OK"
    logins: dict[str, str] = field(default_factory=dict)  # user -> password


class _SmtpRecorder:
    def __init__(self, script: SmtpScript):
        self.script = script
        self.envelopes: list[Any] = []
        self.tls_sessions: list[bool] = []

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list
    ) -> str:
        if address in self.script.refuse_recipients:
            return self.script.refuse_recipients[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.script.data_reply.startswith("250"):
            self.envelopes.append(envelope)
            implicit_tls = server.transport.get_extra_info("ssl_object") is not None
            self.tls_sessions.append(session.ssl is not None or implicit_tls)
        return self.script.data_reply

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and self.script.logins.get(auth_data.login.decode()) == auth_data.password.decode()
        )
        return AuthResult(success=ok, handled=False)  # aiosmtpd answers 235 or 535 itself


class _LoopbackController(Controller):
    """aiosmtpd's Controller bound to port 0: learn the real port before the readiness probe."""

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class FakeSmtp:
    """An aiosmtpd server on 127.0.0.1 in mode none, starttls or ssl, optionally requiring AUTH."""

    def __init__(
        self,
        security: str = "none",
        cert: tuple[Path, Path] | None = None,
        script: SmtpScript | None = None,
    ):
        self.script = script or SmtpScript()
        self.recorder = _SmtpRecorder(self.script)
        kwargs: dict[str, Any] = {}
        if security != "none":
            assert cert is not None, "starttls and ssl need a certificate"
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(cert[0]), str(cert[1]))
            kwargs["ssl_context" if security == "ssl" else "tls_context"] = context
            kwargs["require_starttls"] = security == "starttls"
        if self.script.logins:
            kwargs.update(
                authenticator=self.recorder.authenticate, auth_required=True, auth_require_tls=False
            )
        self.controller = _LoopbackController(self.recorder, hostname="127.0.0.1", port=0, **kwargs)

    @property
    def port(self) -> int:
        return self.controller.port

    @property
    def envelopes(self) -> list[Any]:
        return self.recorder.envelopes

    def __enter__(self) -> FakeSmtp:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1 with its key, as PEM files in `directory`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path
