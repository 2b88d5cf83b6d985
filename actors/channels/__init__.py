"""The channel catalogue: every channel type registered, built from a config dict, and described.

Importing this package fills REGISTRY; `build_channel` validates a config with errors a user can act on.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from messagepusher.actors.channels import (  # noqa: F401 - imported to register their types
    apprise_channel,
    bark,
    client,
    dingtalk,
    discord,
    feishu,
    feishu_app,
    gotify,
    none,
    ntfy,
    onebot,
    pushplus,
    serverchan,
    slack,
    smtp_email,
    telegram,
    webhook,
    wechat_test,
    wecom,
    wecom_app,
)
from messagepusher.actors.channels.base import REGISTRY, Channel, mask_secret

__all__ = [
    "REGISTRY",
    "ChannelConfigError",
    "build_channel",
    "config_json_schemas",
    "get_channel_type",
    "mask_config",
]


class ChannelConfigError(ValueError):
    """A channel type or config the user must fix: which field, its (masked) value, and how."""

    def __init__(self, field: str, value: Any, message: str):
        self.field = field
        self.value = value
        self.message = message
        shown = "" if value is None else f" (got {value!r})"
        super().__init__(f"{field}: {message}{shown}")


def get_channel_type(name: str) -> type[Channel]:
    """The registered channel class called `name`; ChannelConfigError naming the known types if none."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(REGISTRY))
        raise ChannelConfigError(
            "type", name, f"unknown channel type; use one of: {known}"
        ) from None


def build_channel(type_name: str, config_dict: dict[str, Any]) -> Channel:
    """A ready channel of `type_name` from its config; ChannelConfigError names the first bad field.

    Pure (no network); runs in the caller's thread.
    """
    cls = get_channel_type(type_name)
    if not isinstance(config_dict, dict):
        raise ChannelConfigError(
            "config", None, f"must be a JSON object with the {type_name} fields"
        )
    try:
        config = cls.Config.model_validate(config_dict)
    except ValidationError as exc:
        raise _config_error(cls, exc) from None
    return cls(config)


def _config_error(cls: type[Channel], exc: ValidationError) -> ChannelConfigError:
    error = exc.errors(include_url=False)[0]
    location = [str(part) for part in error["loc"] if isinstance(part, str)]
    field = "config" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
    properties = cls.Config.model_json_schema(by_alias=True).get("properties", {})
    value = error.get("input")
    if location and location[0] in cls.secret_fields:
        value = _mask_value(value)
    if error["type"] == "missing":
        description = properties.get(location[-1], {}).get("description", "")
        hint = f": {description}" if description else ""
        return ChannelConfigError(field, None, f"is required for {cls.type_name}{hint}")
    if error["type"] == "extra_forbidden":
        allowed = ", ".join(sorted(properties))
        return ChannelConfigError(
            field, None, f"is not a {cls.type_name} setting; the settings are: {allowed}"
        )
    return ChannelConfigError(field, value, error["msg"].removeprefix("Value error, "))


def config_json_schemas() -> dict[str, dict[str, Any]]:
    """Each type's config as a JSON schema (for the OpenAPI document); secret fields are writeOnly."""
    schemas = {}
    for name, cls in sorted(REGISTRY.items()):
        schema = cls.Config.model_json_schema(by_alias=True)
        schema["title"] = f"{name} channel config"
        for field in cls.secret_fields:
            if field in schema.get("properties", {}):
                schema["properties"][field]["writeOnly"] = True
        schemas[name] = schema
    return schemas


def _mask_value(value: Any) -> Any:
    if isinstance(value, list):
        return [_mask_value(item) for item in value]
    if isinstance(value, dict):
        return {key: _mask_value(item) for key, item in value.items()}
    return None if value is None else mask_secret(str(value))


def mask_config(type_name: str, config_dict: dict[str, Any]) -> dict[str, Any]:
    """A copy of `config_dict` fit for API responses and logs: secrets replaced by `****1234`.

    Secrets are each type's secret fields (tokens, keys, passwords, and whole URLs for
    webhook, discord and slack; every header value of a webhook) and a proxy with credentials.
    For an unknown type every value is masked.
    """
    cls = REGISTRY.get(type_name)
    masked = dict(config_dict)
    for key, value in config_dict.items():
        if cls is None or key in cls.secret_fields:
            masked[key] = _mask_value(value)
        elif key == "proxy" and isinstance(value, str) and urlsplit(value).password:
            masked[key] = mask_secret(value)
    return masked
