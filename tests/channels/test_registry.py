"""The channel catalogue: building channels with actionable config errors, masking, schemas."""

from __future__ import annotations

import pytest

from messagepusher.actors.channels import (
    REGISTRY,
    ChannelConfigError,
    build_channel,
    config_json_schemas,
    get_channel_type,
    mask_config,
)

EXPECTED_TYPES = {
    "webhook", "email", "wecom", "dingtalk", "feishu", "lark", "bark", "serverchan",
    "pushplus", "telegram", "discord", "slack", "ntfy", "gotify", "apprise",
    "wechat_test", "wecom_app", "feishu_app", "onebot",
    "client", "none",
}  # fmt: skip

DEFAULT_BASE_URLS = {
    "wecom": ({"key": "k"}, "https://qyapi.weixin.qq.com"),
    "dingtalk": ({"access_token": "t"}, "https://oapi.dingtalk.com"),
    "feishu": ({"token": "t"}, "https://open.feishu.cn"),
    "lark": ({"token": "t"}, "https://open.larksuite.com"),
    "bark": ({"device_key": "d"}, "https://api.day.app"),
    "serverchan": ({"sendkey": "s"}, "https://sctapi.ftqq.com"),
    "pushplus": ({"token": "t"}, "https://www.pushplus.plus"),
    "telegram": ({"bot_token": "b", "chat_id": 1}, "https://api.telegram.org"),
    "ntfy": ({"topic": "t"}, "https://ntfy.sh"),
    "wechat_test": (
        {"app_id": "a", "app_secret": "s", "template_id": "t", "open_id": "o"},
        "https://api.weixin.qq.com",
    ),
    "wecom_app": (
        {"corp_id": "c", "agent_id": 1, "agent_secret": "s"},
        "https://qyapi.weixin.qq.com",
    ),
    "feishu_app": ({"app_id": "a", "app_secret": "s", "receive_id": "r"}, "https://open.feishu.cn"),
}


def test_every_channel_type_of_the_catalogue_is_registered() -> None:
    assert set(REGISTRY) == EXPECTED_TYPES


@pytest.mark.parametrize("type_name", sorted(DEFAULT_BASE_URLS))
def test_base_url_defaults_to_the_public_service(type_name: str) -> None:
    config, expected = DEFAULT_BASE_URLS[type_name]
    channel = build_channel(type_name, config)
    assert channel.config.base_url == expected
    assert channel.targets()[0].startswith(expected)


def test_an_unknown_type_names_the_known_ones() -> None:
    with pytest.raises(ChannelConfigError) as raised:
        get_channel_type("wechat")
    assert raised.value.field == "type"
    assert "use one of: apprise, bark" in str(raised.value)


def test_a_missing_field_is_named_with_what_to_put_there() -> None:
    with pytest.raises(ChannelConfigError) as raised:
        build_channel("dingtalk", {"secret": "SECxyz"})
    assert raised.value.field == "config.access_token"
    assert "is required for dingtalk: The access_token= value" in str(raised.value)


def test_an_unknown_field_lists_the_allowed_settings() -> None:
    with pytest.raises(ChannelConfigError) as raised:
        build_channel("wecom", {"key": "k", "webhook": "https://qyapi.weixin.qq.com/..."})
    assert raised.value.field == "config.webhook"
    assert "the settings are: base_url, key, mentioned_list, proxy" in str(raised.value)


def test_a_bad_secret_value_is_masked_in_the_error() -> None:
    with pytest.raises(ChannelConfigError) as raised:
        build_channel("telegram", {"bot_token": ["123456:SECRET-TOKEN-VALUE"], "chat_id": 1})
    assert raised.value.field == "config.bot_token"
    assert "SECRET-TOKEN" not in str(raised.value)
    assert "SECRET-TOKEN" not in repr(raised.value.value)


def test_a_config_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ChannelConfigError, match="config: must be a JSON object"):
        build_channel("wecom", ["key"])  # type: ignore[arg-type]


def test_the_config_error_is_a_value_error_that_names_the_field_the_value_and_the_fix() -> None:
    with pytest.raises(ValueError) as raised:
        build_channel("ntfy", {"topic": "bad topic!"})
    error = raised.value
    assert isinstance(error, ChannelConfigError)
    assert error.field == "config.topic" and error.value == "bad topic!"
    assert str(error).startswith("config.topic: ") and "'bad topic!'" in str(error)


@pytest.mark.parametrize(
    ("type_name", "config", "secret_keys"),
    [
        ("wecom", {"key": "693a91f6-7xxx-4bc4"}, ["key"]),
        (
            "dingtalk",
            {"access_token": "b0b4f0c8d2e64b8c", "secret": "SEC1f2e3d4c5b6a7"},
            ["access_token", "secret"],
        ),
        (
            "feishu",
            {"token": "2f1a5b3c-9d8e-4f70", "secret": "mZ3vKp9QxL2wR8tY"},
            ["token", "secret"],
        ),
        ("lark", {"token": "2f1a5b3c-9d8e-4f70"}, ["token"]),
        ("telegram", {"bot_token": "7012345678:AAF-k3yz", "chat_id": "-100123"}, ["bot_token"]),
        ("bark", {"device_key": "Qx7vL2mN8pR4sT6u"}, ["device_key"]),
        ("serverchan", {"sendkey": "SCT123456TaBcDeF"}, ["sendkey"]),
        ("pushplus", {"token": "0a1b2c3d4e5f6071"}, ["token"]),
        ("ntfy", {"topic": "alerts", "token": "tk_AgQdq7mVBoFD37z"}, ["token"]),
        (
            "gotify",
            {"base_url": "https://gotify.example.com", "token": "AbCdEf.123456789"},
            ["token"],
        ),
        ("email", {"host": "smtp.example.com", "password": "correct-horse-battery"}, ["password"]),
        (
            "webhook",
            {"url": "https://hooks.example.com/in/abcdef0123", "secret": "whsec-5f2b9c0e7d"},
            ["url", "secret"],
        ),
        ("discord", {"url": "https://discord.com/api/webhooks/1/abcdefghij"}, ["url"]),
        ("slack", {"url": "https://hooks.slack.com/services/T0/B0/XXXXXXXX"}, ["url"]),
        (
            "wechat_test",
            {"app_id": "wx8a1b2c3d", "app_secret": "0f1e2d3c4b5a6978", "open_id": "oAbc"},
            ["app_secret"],
        ),
        (
            "wecom_app",
            {"corp_id": "ww12345678", "agent_id": 1000002, "agent_secret": "s3cr3t-agent-key"},
            ["agent_secret"],
        ),
        ("feishu_app", {"app_id": "cli_a1b2c3", "app_secret": "feishu-secret-01"}, ["app_secret"]),
        (
            "onebot",
            {"base_url": "http://127.0.0.1:3000", "access_token": "onebot-tok-9", "user_id": 1},
            ["access_token"],
        ),
    ],
)
def test_mask_config_masks_every_secret_field_and_keeps_the_rest(
    type_name: str, config: dict, secret_keys: list[str]
) -> None:
    masked = mask_config(type_name, config)
    for key, value in config.items():
        if key in secret_keys:
            assert masked[key] == "****" + value[-4:]
        else:
            assert masked[key] == value


def test_mask_config_masks_webhook_header_values_apprise_urls_and_proxy_credentials() -> None:
    masked = mask_config(
        "webhook",
        {
            "url": "https://h.example/x",
            "headers": {"Authorization": "Bearer abcdefgh1234"},
            "proxy": "http://user:pw@proxy.example:3128",
        },
    )
    assert masked["headers"] == {"Authorization": "****1234"}
    assert masked["proxy"] == "****3128"
    assert mask_config("apprise", {"urls": ["tgram://123456:abcdefgh/987654"]}) == {
        "urls": ["****7654"]
    }
    assert (
        mask_config("ntfy", {"topic": "alerts", "proxy": "http://proxy.example:3128"})["proxy"]
        == "http://proxy.example:3128"
    )


def test_mask_config_of_an_unknown_type_masks_everything() -> None:
    assert mask_config("retired", {"token": "abcdefghijkl", "n": 12345678901}) == {
        "token": "****ijkl",
        "n": "****8901",
    }


def test_config_json_schemas_cover_every_type_with_secrets_write_only() -> None:
    schemas = config_json_schemas()
    assert set(schemas) == EXPECTED_TYPES
    assert schemas["email"]["properties"]["from"]["type"] == "string"
    assert set(schemas["email"]["required"]) == {"host", "from", "to"}
    assert schemas["email"]["properties"]["security"]["enum"] == ["starttls", "ssl", "none"]
    assert schemas["telegram"]["properties"]["bot_token"]["writeOnly"] is True
    assert schemas["webhook"]["properties"]["url"]["writeOnly"] is True
    assert schemas["gotify"]["required"] == ["base_url", "token"]
    for schema in schemas.values():
        assert "proxy" in schema["properties"]
        assert schema["additionalProperties"] is False
