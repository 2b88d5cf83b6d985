"""How songquanpeng/message-pusher's users and channels become ours: pure functions of its rows.

Its channel rows keep every setting in the same five columns (secret, app_id, account_id, url, other);
each function here says which column is which field for one type. Nothing here touches a database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit


class Unmappable(ValueError):
    """This row has no counterpart here; str() is the reason printed to the operator."""


@dataclass(frozen=True)
class MappedChannel:
    type: str
    config: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    members: list[str] = field(default_factory=list)  # for a group: member channel names


# message-pusher role numbers (common/constants.go): 1 common, 10 admin, 100 root.
ADMIN_ROLE = 10
STATUS_DISABLED = 2
# message-pusher message status: 2 sent, 3 failed; anything else was never sent.
MESSAGE_STATUS = {2: "delivered", 3: "failed"}

# The custom channel's template placeholders and ours ($description and $content are our body).
PLACEHOLDERS = {"$description": "$body", "$content": "$body"}


def user_role(role: Any) -> str:
    return "admin" if _int(role) >= ADMIN_ROLE else "user"


def user_disabled(status: Any) -> bool:
    return _int(status) == STATUS_DISABLED


def message_status(status: Any) -> str:
    return MESSAGE_STATUS.get(_int(status), "cancelled")


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _text(row: dict[str, Any], column: str) -> str:
    value = row.get(column)
    return "" if value is None else str(value).strip()


def _halves(row: dict[str, Any], column: str, separator: str, refusal: str) -> tuple[str, str]:
    """The column's text split at the first `separator`; Unmappable(refusal) if a half is empty."""
    first, _, second = _text(row, column).partition(separator)
    if not first or not second:
        raise Unmappable(refusal)
    return first, second


def _origin(url: str, column: str = "url") -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise Unmappable(f"{column} {url!r} is not an http(s) URL")
    return f"{parts.scheme}://{parts.netloc}"


def _query_value(url: str, name: str) -> str:
    values = parse_qs(urlsplit(url).query).get(name)
    if not values or not values[0]:
        raise Unmappable(f"url has no {name}= (got {url.split('?')[0]}?…)")
    return values[0]


def custom(row: dict[str, Any], user: dict[str, Any], options: dict[str, str]) -> MappedChannel:
    config: dict[str, Any] = {"url": _text(row, "url")}
    notes = []
    template = _text(row, "other")
    if template:
        for theirs, ours in PLACEHOLDERS.items():
            template = template.replace(theirs, ours)
        if "$to" in template:
            notes.append("$to has no counterpart and is sent as the literal text $to")
        config["template"] = template
    return MappedChannel("webhook", config, notes)


def email(row: dict[str, Any], user: dict[str, Any], options: dict[str, str]) -> MappedChannel:
    # message-pusher sends through the site's SMTP settings to the user's own address.
    host = options.get("SMTPServer", "").strip()
    if not host:
        raise Unmappable("the message-pusher site has no SMTPServer option to send e-mail with")
    recipients = [a.strip() for a in _text(user, "email").split("|") if a.strip()]
    if not recipients:
        raise Unmappable("the user has no e-mail address in message-pusher")
    port = _int(options.get("SMTPPort")) or 587
    account = options.get("SMTPAccount", "").strip()
    config: dict[str, Any] = {
        "host": host,
        "port": port,
        "security": "ssl" if port == 465 else "starttls",
        "from": account,
        "to": recipients,
    }
    if account:
        config["username"] = account
        config["password"] = options.get("SMTPToken", "")
    return MappedChannel("email", config)


def bark(row: dict[str, Any], user: dict[str, Any], options: dict[str, str]) -> MappedChannel:
    config = {"device_key": _text(row, "secret")}
    if _text(row, "url"):
        config["base_url"] = _text(row, "url").rstrip("/")
    return MappedChannel("bark", config)


def telegram(row: dict[str, Any], user: dict[str, Any], options: dict[str, str]) -> MappedChannel:
    chat = _text(row, "account_id")
    chat_id: int | str = int(chat) if chat.lstrip("-").isdigit() else chat
    return MappedChannel("telegram", {"bot_token": _text(row, "secret"), "chat_id": chat_id})


def discord(row: dict[str, Any], user: dict[str, Any], options: dict[str, str]) -> MappedChannel:
    return MappedChannel("discord", {"url": _text(row, "url")})


def corp(row: dict[str, Any], user: dict[str, Any], options: dict[str, str]) -> MappedChannel:
    url = _text(row, "url")
    return MappedChannel("wecom", {"key": _query_value(url, "key"), "base_url": _origin(url)})


def ding(row: dict[str, Any], user: dict[str, Any], options: dict[str, str]) -> MappedChannel:
    url = _text(row, "url")
    config = {"access_token": _query_value(url, "access_token"), "base_url": _origin(url)}
    if _text(row, "secret"):
        config["secret"] = _text(row, "secret")
    return MappedChannel("dingtalk", config)


def lark(row: dict[str, Any], user: dict[str, Any], options: dict[str, str]) -> MappedChannel:
    url = _text(row, "url")
    path = urlsplit(url).path.rstrip("/")
    if "/bot/v2/hook/" not in path:
        raise Unmappable(f"url {url.split('/hook/')[0]}… is not a Feishu/Lark robot webhook")
    origin = _origin(url)
    config = {"token": path.rsplit("/", 1)[1], "base_url": origin}
    if _text(row, "secret"):
        config["secret"] = _text(row, "secret")
    return MappedChannel("lark" if "larksuite" in origin else "feishu", config)


def stored_only(type_name: str):
    def mapping(row: dict[str, Any], user: dict[str, Any], options: dict[str, str]):
        return MappedChannel(type_name, {})

    return mapping


def wechat_test(row: dict[str, Any], user: dict[str, Any], options: dict[str, str]):
    config = {
        "app_id": _text(row, "app_id"),
        "app_secret": _text(row, "secret"),
        "template_id": _text(row, "other"),
        "open_id": _text(row, "account_id"),
    }
    return MappedChannel("wechat_test", config)


def wecom_app(row: dict[str, Any], user: dict[str, Any], options: dict[str, str]):
    corp_id, agent_id = _halves(
        row, "app_id", "|", "app_id must be corp_id|agent_id as message-pusher stores it"
    )
    config = {
        "corp_id": corp_id,
        "agent_id": agent_id,
        "agent_secret": _text(row, "secret"),
        "to_user": _text(row, "account_id") or "@all",
    }
    return MappedChannel("wecom_app", config)


def feishu_app(row: dict[str, Any], user: dict[str, Any], options: dict[str, str]):
    id_type, receive_id = _halves(
        row, "account_id", ":", "account_id must be receive_id_type:receive_id, e.g. open_id:ou_…"
    )
    config = {
        "app_id": _text(row, "app_id"),
        "app_secret": _text(row, "secret"),
        "receive_id_type": id_type,
        "receive_id": receive_id,
    }
    return MappedChannel("feishu_app", config)


def onebot(row: dict[str, Any], user: dict[str, Any], options: dict[str, str]):
    kind, _, number = _text(row, "account_id").rpartition("_")
    if not number.isdigit() or kind not in ("", "user", "group"):
        raise Unmappable("account_id must be a QQ number, user_<number> or group_<number>")
    config: dict[str, Any] = {"base_url": _text(row, "url").rstrip("/")}
    if _text(row, "secret"):
        config["access_token"] = _text(row, "secret")
    config["group_id" if kind == "group" else "user_id"] = int(number)
    return MappedChannel("onebot", config)


def group(row: dict[str, Any], user: dict[str, Any], options: dict[str, str]) -> MappedChannel:
    members = [m.strip() for m in _text(row, "app_id").split("|") if m.strip()]
    if not members:
        raise Unmappable("the group has no member channels")
    notes = []
    if _text(row, "account_id"):
        notes.append("per-member recipients (account_id) are dropped: members use their own")
    return MappedChannel("group", {"members": members}, notes, members)


MAPPINGS = {
    "custom": custom,
    "email": email,
    "bark": bark,
    "telegram": telegram,
    "discord": discord,
    "corp": corp,
    "ding": ding,
    "lark": lark,
    "client": stored_only("client"),
    "none": stored_only("none"),
    "test": wechat_test,
    "corp_app": wecom_app,
    "lark_app": feishu_app,
    "one_bot": onebot,
    "group": group,
}


def map_channel(
    row: dict[str, Any], user: dict[str, Any], options: dict[str, str]
) -> MappedChannel:
    """Our type and config for one message-pusher channel row; Unmappable says why not."""
    kind = _text(row, "type")
    mapping = MAPPINGS.get(kind)
    if mapping is None:
        raise Unmappable(f"message-pusher type {kind!r} has no counterpart here")
    return mapping(row, user, options)
