"""Request bodies of the core API as pydantic models: they validate requests and feed OpenAPI.

Field limits here are the API's limits; errors name the field that broke them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    StrictBool,
    StrictInt,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from messagepusher.supervisor.timefmt import from_datetime


def _in_window(value: datetime) -> datetime:
    from_datetime(value)  # TimeOutOfRange (a ValueError) names the window
    return value


# The document's picture of a time: RFC 3339 in years 1971 to 9998, which lie inside the window
# of supervisor/timefmt whatever the zone offset. The server takes the whole window.
_YEAR = r"(19[7-9][1-9]|19[89]0|[2-8]\d{3}|9[0-8]\d{2}|99[0-8]\d|999[0-8])"
_DAY = r"(0[1-9]|1[0-2])-(0[1-9]|1\d|2[0-8])"  # days past the 28th are left to the server
TIME_SCHEMA = {
    "type": "string",
    "format": "date-time",
    "pattern": rf"^{_YEAR}-{_DAY}T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{{1,9}})?"
    r"(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$",
}

# Every time a body carries: RFC 3339 with a zone, and inside the window of supervisor/timefmt,
# so that it can be stored and rendered in UTC. Per-field limits (how far ahead) come on top.
ApiTime = Annotated[AwareDatetime, AfterValidator(_in_window), WithJsonSchema(TIME_SCHEMA)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _http_url(value: str | None, field: str) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{field} must be an http:// or https:// URL with a host")
    return value


class AIOptions(Strict):
    task: Literal["summarize", "translate", "classify"]
    language: str | None = Field(
        None, max_length=32, description="target language for translate, e.g. zh-CN, en"
    )
    provider: str | None = Field(
        None, max_length=64, description="one of ai.providers; default ai.default_provider"
    )

    @model_validator(mode="after")
    def _translate_needs_language(self) -> AIOptions:
        if self.task == "translate" and not self.language:
            raise ValueError('translate needs a target language, e.g. "language": "en"')
        return self


class MessageIn(Strict):
    title: str = Field("", max_length=256)
    body: str = Field("", max_length=65_536)
    format: Literal["text", "markdown", "html"] = "text"
    url: str | None = Field(None, max_length=2048)
    priority: StrictInt = Field(3, ge=1, le=5, description="1 (low) to 5 (most urgent)")
    channels: list[str | StrictInt] | None = Field(
        None, max_length=50, description="names or ids; default: your default channels"
    )
    ai: AIOptions | None = None
    send_at: ApiTime | None = Field(
        None,
        description="RFC 3339 with a time zone, e.g. 2026-11-28T09:00:00+08:00; at most "
        "limits.max_schedule_days ahead",
    )
    callback_url: str | None = Field(None, max_length=2048)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return _http_url(value, "url")

    @field_validator("callback_url")
    @classmethod
    def _callback(cls, value: str | None) -> str | None:
        return _http_url(value, "callback_url")

    @model_validator(mode="after")
    def _something_to_send(self) -> MessageIn:
        if not (self.title or self.body or self.url):
            raise ValueError("give at least one of title, body or url")
        return self


class ChannelIn(Strict):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[^\s/][^/]*$")
    type: str = Field(min_length=1, max_length=32)
    config: dict[str, Any] = Field(default_factory=dict)
    enabled: StrictBool = True
    default: StrictBool = False
    fallback: str | StrictInt | None = Field(
        None, description="name or id of the channel tried when this one fails"
    )


class ChannelPatch(Strict):
    name: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[^\s/][^/]*$")
    config: dict[str, Any] | None = Field(
        None, description="merged into the stored config; null removes a key"
    )
    enabled: StrictBool | None = None
    default: StrictBool | None = None
    fallback: str | StrictInt | None = None


class GroupConfig(Strict):
    members: list[str | StrictInt] = Field(min_length=1, max_length=50)


class ConfigPatch(RootModel[dict[str, Any]]):
    """Run-time config keys to change, as dotted names or nested objects; null removes an
    override. supervisor/runtime_config checks names and values."""
