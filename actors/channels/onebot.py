"""The OneBot v11 channel: QQ messages through a OneBot HTTP endpoint (NapCat, LLOneBot, go-cqhttp).

One send_msg request to a user or a group; the HTTP status, then `status` and `retcode`, decide.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from messagepusher.actors.channels.base import (
    ChannelConfig,
    OutboundMessage,
    SendResult,
    register,
)
from messagepusher.actors.channels.http_common import (
    Answer,
    BaseUrl,
    Call,
    OneRequestChannel,
    classify_status,
    json_call,
    render,
)

RETRY_RETCODES = frozenset({103})  # the implementation could not carry it out (QQ link trouble)
HINTS = {
    100: "a parameter is missing or wrong: check user_id or group_id",
    102: "the parameters are not valid (no such friend or group?)",
    103: "the OneBot implementation failed to send",
    104: "the credentials are not valid: log the OneBot implementation in to QQ again",
}
STATUS_HINTS = {
    401: "the endpoint wants access_token: set it to the implementation's token",
    403: "access_token is wrong: copy the implementation's token",
    404: "send_msg not found: base_url must be the OneBot HTTP API root",
}


class OneBotConfig(ChannelConfig):
    base_url: BaseUrl = Field(
        description="The OneBot v11 HTTP API root, e.g. http://127.0.0.1:3000."
    )
    access_token: str | None = Field(
        None, description="The implementation's access token, sent as Authorization: Bearer."
    )
    user_id: int | None = Field(None, description="The QQ number to send a private message to.")
    group_id: int | None = Field(None, description="The QQ group to send to (instead of user_id).")

    @model_validator(mode="after")
    def _one_target(self) -> OneBotConfig:
        if (self.user_id is None) == (self.group_id is None):
            raise ValueError("give exactly one of user_id (a QQ number) or group_id (a QQ group)")
        return self


def build_call(message: OutboundMessage, config: OneBotConfig) -> Call:
    """send_msg as plain text (auto_escape: no CQ codes are read from the message)."""
    payload: dict[str, Any] = {"message": render(message, markdown=False), "auto_escape": True}
    if config.group_id is not None:
        payload.update(message_type="group", group_id=config.group_id)
    else:
        payload.update(message_type="private", user_id=config.user_id)
    headers = {"Authorization": f"Bearer {config.access_token}"} if config.access_token else {}
    return json_call(f"{config.base_url}/send_msg", payload, headers)


def classify_answer(answer: Answer, now: float) -> SendResult:
    """HTTP first (401/403/404 permanent, 5xx retry); then status "ok" (retcode 0) or "async"
    (retcode 1) is sent; retcode 103 retries; any other retcode is permanent."""
    if answer.status != 200:
        return classify_status(answer, now, "OneBot", STATUS_HINTS)
    data = answer.json()
    if not isinstance(data, dict) or "retcode" not in data:
        return SendResult.permanent(
            f"OneBot answered without a retcode ({answer.short or 'empty body'}); check base_url",
            answer.status,
            answer.excerpt,
        )
    retcode, status = data["retcode"], data.get("status")
    if retcode in (0, 1) and status in ("ok", "async"):
        result = SendResult.sent(answer.status, answer.excerpt)
        message_id = (data.get("data") or {}).get("message_id")
        result.remote_id = None if message_id is None else str(message_id)
        return result
    said = data.get("wording") or data.get("message") or data.get("msg") or ""
    detail = f"OneBot error retcode={retcode} status={status}: {said}".rstrip(": ")
    if retcode in HINTS:
        detail += f" ({HINTS[retcode]})"
    if retcode in RETRY_RETCODES:
        return SendResult.retry(detail, answer.status, answer.excerpt)
    return SendResult.permanent(detail, answer.status, answer.excerpt)


@register
class OneBotChannel(OneRequestChannel):
    type_name = "onebot"
    rate_per_minute = 20  # QQ flags accounts that post faster
    Config = OneBotConfig
    secret_fields = ("access_token",)
    config: OneBotConfig

    build_call = staticmethod(build_call)
    classify_answer = staticmethod(classify_answer)
