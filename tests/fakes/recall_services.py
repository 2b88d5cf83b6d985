"""Fakes of Telegram and Discord that also take messages back: delete and edit by the id they gave.

Each remembers the ids it handed out and refuses a delete or edit of any other, as the real one does.
"""

from __future__ import annotations

import itertools

from fakes.channel_services import (
    DiscordFake,
    Reply,
    Request,
    TelegramFake,
    _expect,
    _Handler,
    _json_body,
)


class _AnyMethodHandler(_Handler):
    do_DELETE = do_PATCH = _Handler._serve


class TelegramRecallFake(TelegramFake):
    """Bot API: sendMessage answers a message_id; deleteMessage and editMessageText need one."""

    def __init__(self, bot_token: str, chat_id: str):
        super().__init__(bot_token, chat_id)
        self.server.RequestHandlerClass = _AnyMethodHandler
        self.ids = itertools.count(100)
        self.sent: dict[int, str] = {}
        self.deleted: list[int] = []
        self.edited: list[tuple[int, str]] = []

    def _method(self, request: Request) -> str:
        return request.path.rsplit("/", 1)[-1]

    def check(self, request: Request) -> None:
        method = self._method(request)
        if method == "sendMessage":
            super().check(request)
            return
        _expect(
            request.path == f"/bot{self.bot_token}/{method}"
            and method in ("deleteMessage", "editMessageText"),
            f"path {request.path}",
            Reply.json({"ok": False, "error_code": 404, "description": "Not Found"}, 404),
        )
        data = _json_body(request, Reply.json({"ok": False, "error_code": 400}, 400))
        missing = Reply.json(
            {
                "ok": False,
                "error_code": 400,
                "description": f"Bad Request: message to {'delete' if method == 'deleteMessage' else 'edit'} not found",
            },
            400,
        )
        _expect(str(data.get("chat_id")) == self.chat_id, "wrong chat_id", missing)
        _expect(
            data.get("message_id") in self.sent,
            f"unknown message_id {data.get('message_id')}",
            missing,
        )

    def success(self, request: Request) -> Reply:
        method = self._method(request)
        data = request.json()
        if method == "sendMessage":
            message_id = next(self.ids)
            self.sent[message_id] = data["text"]
            return Reply.json(
                {"ok": True, "result": {"message_id": message_id, "chat": {"id": self.chat_id}}}
            )
        if method == "deleteMessage":
            self.deleted.append(data["message_id"])
            del self.sent[data["message_id"]]
            return Reply.json({"ok": True, "result": True})
        self.edited.append((data["message_id"], data["text"]))
        self.sent[data["message_id"]] = data["text"]
        return Reply.json({"ok": True, "result": {"message_id": data["message_id"]}})


class DiscordRecallFake(DiscordFake):
    """Webhook: POST ?wait=true answers the message with its id; /messages/{id} deletes or edits."""

    def __init__(self, webhook_id: str, token: str):
        super().__init__(webhook_id, token)
        self.server.RequestHandlerClass = _AnyMethodHandler
        self.ids = itertools.count(1_180_000_000_000_000_000)
        self.sent: dict[str, str] = {}
        self.deleted: list[str] = []
        self.edited: list[tuple[str, str]] = []

    def check(self, request: Request) -> None:
        if request.method == "POST":
            super().check(request)
            return
        prefix = self.path + "/messages/"
        unknown = Reply.json({"message": "Unknown Message", "code": 10008}, 404)
        _expect(request.path.startswith(prefix), f"path {request.path}", unknown)
        _expect(request.path[len(prefix) :] in self.sent, "unknown message id", unknown)
        if request.method == "PATCH":
            data = _json_body(request, Reply.json({"message": "Invalid Form Body"}, 400))
            _expect(bool(data.get("content")), "no content", Reply.json({"code": 50006}, 400))

    def success(self, request: Request) -> Reply:
        if request.method == "POST":
            if request.query.get("wait") != "true":
                return Reply(204)
            message_id = str(next(self.ids))
            self.sent[message_id] = request.json()["content"]
            return Reply.json({"id": message_id, "content": self.sent[message_id]})
        message_id = request.path.rsplit("/", 1)[-1]
        if request.method == "DELETE":
            self.deleted.append(message_id)
            del self.sent[message_id]
            return Reply(204)
        content = request.json()["content"]
        self.edited.append((message_id, content))
        self.sent[message_id] = content
        return Reply.json({"id": message_id, "content": content})
