"""Local fakes of the app services that need an access token: WeChat test account, WeCom app,
Feishu app, and a OneBot v11 endpoint. Each answers as its documentation says, error codes included.

Token fakes count every token fetch, can hold a fetch (to make two senders meet) and can expire
every token they gave out (the service's answer to a token that expired mid-run). The WeCom and
Feishu app fakes also recall (and Feishu edits) the messages they gave ids to, and only those.
"""

from __future__ import annotations

import itertools
import json
import threading
from typing import Any

from fakes.channel_services import (
    FakeService,
    Refuse,
    Reply,
    Request,
    _expect,
    _Handler,
    _json_body,
)


class _AnyMethodHandler(_Handler):
    do_DELETE = do_PATCH = _Handler._serve


class TokenBook:
    """The tokens a fake gave out: which are valid, which expired, how many fetches there were."""

    def __init__(self, prefix: str, expires_in: int = 7200):
        self.prefix = prefix
        self.expires_in = expires_in
        self.valid: set[str] = set()
        self.expired: set[str] = set()
        self.fetches = 0
        self.hold_seconds = 0.0  # a fetch answers this much later (two senders meet)
        self._numbers = itertools.count(1)

    def issue(self) -> str:
        self.fetches += 1
        token = f"{self.prefix}-{next(self._numbers)}"
        self.valid.add(token)
        return token

    def expire_all(self) -> None:
        self.expired |= self.valid
        self.valid.clear()

    def state(self, token: str | None) -> str:
        """ "valid", "expired" or "unknown"."""
        if token in self.valid:
            return "valid"
        return "expired" if token in self.expired else "unknown"


class TokenFake(FakeService):
    """A fake with a token endpoint: token requests bypass the script (it is for sends)."""

    token_path = ""

    def __init__(self, prefix: str):
        super().__init__()
        self.tokens = TokenBook(prefix)
        self.token_requests: list[Request] = []

    def token_reply(self, request: Request) -> Reply:
        raise NotImplementedError

    def handle(self, request: Request) -> Reply:
        if request.path != self.token_path:
            return super().handle(request)
        if self.tokens.hold_seconds:
            threading.Event().wait(self.tokens.hold_seconds)
        with self._lock:
            self.token_requests.append(request)
            return self.token_reply(request)

    @property
    def sends(self) -> list[Request]:
        return [r for r in self.requests if r.path != self.token_path]


class WeChatTestFake(TokenFake):
    """微信公众平台: GET /cgi-bin/token and POST /cgi-bin/message/template/send."""

    token_path = "/cgi-bin/token"

    def __init__(self, app_id: str, app_secret: str, template_id: str, followers: list[str]):
        super().__init__("wx-token")
        self.app_id, self.app_secret, self.template_id = app_id, app_secret, template_id
        self.followers = set(followers)
        self._msgids = itertools.count(200228332)

    def token_reply(self, request: Request) -> Reply:
        if request.query.get("grant_type") != "client_credential":
            return Reply.json({"errcode": 40002, "errmsg": "invalid grant_type"})
        if request.query.get("appid") != self.app_id:
            return Reply.json({"errcode": 40013, "errmsg": "invalid appid"})
        if request.query.get("secret") != self.app_secret:
            return Reply.json({"errcode": 40125, "errmsg": "invalid appsecret"})
        return Reply.json(
            {"access_token": self.tokens.issue(), "expires_in": self.tokens.expires_in}
        )

    def check(self, request: Request) -> None:
        _expect(
            request.path == "/cgi-bin/message/template/send",
            f"path {request.path}",
            Reply(404, "not found"),
        )
        state = self.tokens.state(request.query.get("access_token"))
        _expect(
            state != "expired",
            "expired token",
            Reply.json({"errcode": 42001, "errmsg": "access_token expired"}),
        )
        _expect(
            state == "valid",
            "unknown token",
            Reply.json({"errcode": 40001, "errmsg": "invalid credential, access_token is invalid"}),
        )
        data = _json_body(request, Reply.json({"errcode": 47001, "errmsg": "data format error"}))
        _expect(
            data.get("template_id") == self.template_id,
            "template",
            Reply.json({"errcode": 40037, "errmsg": "invalid template_id"}),
        )
        _expect(
            data.get("touser") in self.followers,
            f"open_id {data.get('touser')}",
            Reply.json({"errcode": 40003, "errmsg": "invalid openid"}),
        )
        values = data.get("data")
        _expect(
            isinstance(values, dict)
            and all(isinstance(v, dict) and "value" in v for v in values.values()),
            "template data",
            Reply.json({"errcode": 47003, "errmsg": "argument invalid! data.title.value empty"}),
        )

    def success(self, request: Request) -> Reply:
        return Reply.json({"errcode": 0, "errmsg": "ok", "msgid": next(self._msgids)})


class WeComAppFake(TokenFake):
    """企业微信: GET /cgi-bin/gettoken, POST /cgi-bin/message/send (application messages) and
    POST /cgi-bin/message/recall of a msgid it gave (errcode 40058, invalid parameter, otherwise)."""

    token_path = "/cgi-bin/gettoken"
    TEXT_LIMIT = 2048

    def __init__(self, corp_id: str, secret: str, agent_id: int, users: list[str]):
        super().__init__("wecom-token")
        self.corp_id, self.secret, self.agent_id = corp_id, secret, agent_id
        self.users = set(users)
        self._msgids = itertools.count(1)
        self.msgids: set[str] = set()  # given at send, not recalled yet
        self.recalled: list[str] = []

    def token_reply(self, request: Request) -> Reply:
        if request.query.get("corpid") != self.corp_id:
            return Reply.json({"errcode": 40013, "errmsg": "invalid corpid"})
        if request.query.get("corpsecret") != self.secret:
            return Reply.json({"errcode": 40001, "errmsg": "invalid secret"})
        return Reply.json(
            {
                "errcode": 0,
                "errmsg": "ok",
                "access_token": self.tokens.issue(),
                "expires_in": self.tokens.expires_in,
            }
        )

    def check(self, request: Request) -> None:
        _expect(
            request.path in ("/cgi-bin/message/send", "/cgi-bin/message/recall"),
            f"path {request.path}",
            Reply(404, "not found"),
        )
        state = self.tokens.state(request.query.get("access_token"))
        _expect(
            state != "expired",
            "expired token",
            Reply.json({"errcode": 42001, "errmsg": "access_token expired"}),
        )
        _expect(
            state == "valid",
            "unknown token",
            Reply.json({"errcode": 40014, "errmsg": "invalid access_token"}),
        )
        data = _json_body(request, Reply.json({"errcode": 40058, "errmsg": "invalid json"}))
        if request.path == "/cgi-bin/message/recall":
            _expect(
                data.get("msgid") in self.msgids,
                f"unknown msgid {data.get('msgid')}",
                Reply.json({"errcode": 40058, "errmsg": "invalid msgid"}),
            )
            return
        _expect(
            data.get("agentid") == self.agent_id,
            "agentid",
            Reply.json({"errcode": 40056, "errmsg": "invalid agentid"}),
        )
        msgtype = data.get("msgtype")
        _expect(
            msgtype in ("text", "markdown", "textcard") and isinstance(data.get(msgtype), dict),
            f"msgtype {msgtype}",
            Reply.json({"errcode": 40008, "errmsg": "invalid message type"}),
        )
        part = data[msgtype]
        if msgtype == "textcard":
            _expect(
                bool(part.get("title")) and bool(part.get("url")),
                "textcard without title or url",
                Reply.json({"errcode": 41004, "errmsg": "missing title or url"}),
            )
        else:
            content = part.get("content") or ""
            _expect(
                0 < len(content.encode()) <= self.TEXT_LIMIT,
                f"content of {len(content.encode())} bytes",
                Reply.json({"errcode": 45002, "errmsg": "content size out of limit"}),
            )
        users = self.recipients(data)
        _expect(
            bool(users) or data.get("toparty") or data.get("totag"),
            "no valid recipient",
            Reply.json({"errcode": 81013, "errmsg": "user & party & tag all invalid"}),
        )

    def recipients(self, data: dict[str, Any]) -> list[str]:
        named = [u for u in str(data.get("touser") or "").split("|") if u]
        if named == ["@all"]:
            return sorted(self.users)
        return [u for u in named if u in self.users]

    def success(self, request: Request) -> Reply:
        data = request.json()
        if request.path == "/cgi-bin/message/recall":
            self.msgids.discard(data["msgid"])
            self.recalled.append(data["msgid"])
            return Reply.json({"errcode": 0, "errmsg": "ok"})
        named = [u for u in str(data.get("touser") or "").split("|") if u and u != "@all"]
        invalid = "|".join(u for u in named if u not in self.users)
        msgid = f"msgid-{next(self._msgids)}"
        self.msgids.add(msgid)
        return Reply.json({"errcode": 0, "errmsg": "ok", "invaliduser": invalid, "msgid": msgid})


class FeishuAppFake(TokenFake):
    """飞书开放平台: POST /open-apis/auth/v3/tenant_access_token/internal and /open-apis/im/v1/messages;
    DELETE (recall), PUT (edit a text) and PATCH (update a shared card) of /messages/{message_id}."""

    token_path = "/open-apis/auth/v3/tenant_access_token/internal"
    MESSAGES = "/open-apis/im/v1/messages"

    def __init__(self, app_id: str, app_secret: str, receivers: dict[str, set[str]]):
        super().__init__("t-feishu")
        self.server.RequestHandlerClass = _AnyMethodHandler
        self.app_id, self.app_secret = app_id, app_secret
        self.receivers = receivers  # receive_id_type -> ids the app may reach
        self._message_ids = itertools.count(1)
        self.sent: dict[str, tuple[str, dict[str, Any]]] = {}  # id -> (msg_type, content)
        self.recalled: list[str] = []
        self.edited: list[tuple[str, str, dict[str, Any]]] = []  # (id, method, new content)

    def token_reply(self, request: Request) -> Reply:
        try:
            data = request.json()
        except ValueError:
            return Reply.json({"code": 9499, "msg": "Bad Request"}, 400)
        if data.get("app_id") != self.app_id:
            return Reply.json({"code": 10003, "msg": "invalid param"}, 400)
        if data.get("app_secret") != self.app_secret:
            return Reply.json({"code": 10014, "msg": "app secret invalid"}, 400)
        return Reply.json(
            {
                "code": 0,
                "msg": "ok",
                "tenant_access_token": self.tokens.issue(),
                "expire": self.tokens.expires_in,
            }
        )

    def check(self, request: Request) -> None:
        _expect(
            request.path == self.MESSAGES or request.path.startswith(self.MESSAGES + "/"),
            f"path {request.path}",
            Reply(404, ""),
        )
        auth = request.headers.get("authorization", "")
        state = self.tokens.state(auth.removeprefix("Bearer "))
        _expect(
            state == "valid",
            f"{state} token",
            Reply.json(
                {
                    "code": 99991663,
                    "msg": "Invalid access token for authorization. Please make a request "
                    "with token attached.",
                },
                400,
            ),
        )
        if request.path != self.MESSAGES:
            self.check_change(request)
            return
        data = _json_body(request, Reply.json({"code": 9499, "msg": "Bad Request"}, 400))
        id_type = request.query.get("receive_id_type")
        _expect(
            data.get("receive_id") in self.receivers.get(id_type, set()),
            f"receiver {id_type}:{data.get('receive_id')}",
            Reply.json({"code": 230013, "msg": "Bot has NO availability to this user."}, 400),
        )
        _expect(
            data.get("msg_type") in ("text", "interactive")
            and isinstance(data.get("content"), str),
            "msg_type or content",
            Reply.json(
                {"code": 230001, "msg": "Your request contains an invalid request parameter."}, 400
            ),
        )
        try:
            content = json.loads(data["content"])
        except ValueError:
            raise Refuse(
                "content is not JSON",
                Reply.json({"code": 230001, "msg": "invalid content"}, 400),
            ) from None
        wanted = "text" if data["msg_type"] == "text" else "elements"
        _expect(
            isinstance(content, dict) and wanted in content,
            f"content without {wanted}",
            Reply.json({"code": 230001, "msg": "invalid content"}, 400),
        )

    def check_change(self, request: Request) -> None:
        """A recall or edit: of a message this app sent and did not recall, of the right kind."""
        message_id = request.path.rsplit("/", 1)[-1]
        _expect(
            request.method in ("DELETE", "PUT", "PATCH"),
            f"method {request.method}",
            Reply(404, ""),
        )
        _expect(
            message_id not in self.recalled,
            "already recalled",
            Reply.json({"code": 230011, "msg": "The message is recalled."}, 400),
        )
        _expect(
            message_id in self.sent,
            f"unknown message_id {message_id}",
            Reply.json(
                {
                    "code": 230001,
                    "msg": "Your request contains an invalid request parameter, "
                    "ext=invalid message_id.",
                },
                400,
            ),
        )
        if request.method == "DELETE":
            return
        msg_type, content = self.sent[message_id]
        data = _json_body(request, Reply.json({"code": 9499, "msg": "Bad Request"}, 400))
        unsupported = Reply.json(
            {"code": 230054, "msg": "This operation is not supported for this message type."},
            400,
        )
        if request.method == "PUT":
            _expect(msg_type == "text", "PUT of a card", unsupported)
            _expect(data.get("msg_type") == "text", "PUT not as text", unsupported)
        else:
            _expect(msg_type == "interactive", "PATCH of a text", unsupported)
            _expect(
                content.get("config", {}).get("update_multi") is True,
                "card not shared",
                Reply.json(
                    {"code": 230099, "msg": "Failed to create card content, ext=not shared card"},
                    400,
                ),
            )
        try:
            new = json.loads(data.get("content") or "")
        except ValueError:
            raise Refuse(
                "content is not JSON", Reply.json({"code": 230001, "msg": "invalid content"}, 400)
            ) from None
        wanted = "text" if msg_type == "text" else "elements"
        _expect(
            isinstance(new, dict) and wanted in new,
            f"content without {wanted}",
            Reply.json({"code": 230001, "msg": "invalid content"}, 400),
        )
        if msg_type == "interactive":
            _expect(
                new.get("config", {}).get("update_multi") is True,
                "new card not shared",
                Reply.json(
                    {"code": 230099, "msg": "Failed to create card content, ext=not shared card"},
                    400,
                ),
            )

    def success(self, request: Request) -> Reply:
        if request.path == self.MESSAGES:
            data = request.json()
            message_id = f"om_{next(self._message_ids):032x}"
            self.sent[message_id] = (data["msg_type"], json.loads(data["content"]))
            return Reply.json({"code": 0, "msg": "success", "data": {"message_id": message_id}})
        message_id = request.path.rsplit("/", 1)[-1]
        if request.method == "DELETE":
            self.recalled.append(message_id)
            del self.sent[message_id]
            return Reply.json({"code": 0, "msg": "success", "data": {}})
        new = json.loads(request.json()["content"])
        self.sent[message_id] = (self.sent[message_id][0], new)
        self.edited.append((message_id, request.method, new))
        return Reply.json({"code": 0, "msg": "success", "data": {}})


class OneBotFake(FakeService):
    """A OneBot v11 HTTP endpoint: POST /send_msg with Authorization: Bearer <access_token>."""

    def __init__(self, access_token: str | None, friends: set[int], groups: set[int]):
        super().__init__()
        self.access_token = access_token
        self.friends, self.groups = friends, groups
        self._message_ids = itertools.count(1001)

    def check(self, request: Request) -> None:
        _expect(request.path == "/send_msg", f"path {request.path}", Reply(404, ""))
        if self.access_token:
            auth = request.headers.get("authorization")
            _expect(auth is not None, "no token", Reply(401, ""))
            _expect(auth == f"Bearer {self.access_token}", "wrong token", Reply(403, ""))
        data = _json_body(request, Reply(400, ""))

        def failed(retcode: int, wording: str) -> Reply:
            return Reply.json(
                {
                    "status": "failed",
                    "retcode": retcode,
                    "data": None,
                    "message": wording,
                    "wording": wording,
                }
            )

        kind = data.get("message_type")
        if kind == "group":
            _expect(data.get("group_id") in self.groups, "unknown group", failed(100, "群不存在"))
        else:
            _expect(kind == "private", f"message_type {kind}", failed(100, "message_type 无效"))
            _expect(data.get("user_id") in self.friends, "not a friend", failed(100, "好友不存在"))
        _expect(bool(data.get("message")), "empty message", failed(100, "消息为空"))

    def success(self, request: Request) -> Reply:
        return Reply.json(
            {
                "status": "ok",
                "retcode": 0,
                "data": {"message_id": next(self._message_ids)},
                "message": "",
                "wording": "",
            }
        )
