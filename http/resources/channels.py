"""/api/v1/channels: a user's channels, their encrypted configs, and a real test send.

Configs are validated by the channel type's schema and stored encrypted; responses mask secrets.
"""

from __future__ import annotations

from typing import Any

import falcon
from peewee import IntegrityError

from messagepusher.actors.channels import ChannelConfigError, build_channel, mask_config
from messagepusher.actors.channels.base import OutboundMessage, SendContext
from messagepusher.actors.channels.transport import Transport
from messagepusher.http.auth import get_owned, owner_filter
from messagepusher.http.errors import APIError, unprocessable
from messagepusher.http.params import as_id
from messagepusher.http.resources.common import newest_page, read_model
from messagepusher.http.routes import Op, Route
from messagepusher.http.schemas import ChannelIn, ChannelPatch, GroupConfig
from messagepusher.outbound import netguard
from messagepusher.supervisor.db import write_transaction
from messagepusher.supervisor.models import Channel
from messagepusher.supervisor.timefmt import to_rfc3339

GROUP = "group"


def view(runtime, c: Channel) -> dict[str, Any]:
    config = runtime.secretbox.decrypt(c.config)
    return {
        "id": c.id,
        "user_id": c.user_id,
        "name": c.name,
        "type": c.type,
        "config": config if c.type == GROUP else mask_config(c.type, config),
        "enabled": c.enabled,
        "default": c.is_default,
        "fallback": c.fallback_id,
        "created_at": to_rfc3339(c.created_at),
        "updated_at": to_rfc3339(c.updated_at),
    }


def validate_config(
    runtime, user_id: int, type_name: str, config: dict[str, Any], self_id: int | None = None
) -> dict[str, Any]:
    """A checked config for `type_name`, or 422 naming the field; refuses private targets."""
    if type_name == GROUP:
        try:
            group = GroupConfig.model_validate(config)
        except Exception as exc:  # noqa: BLE001 - pydantic's message is the user's hint
            raise unprocessable(
                "config.members",
                f"a group needs members: a list of your channel names or ids ({exc.__class__.__name__})",
            ) from None
        for member in group.members:
            row = _find(user_id, member)
            if row is None:
                raise unprocessable("config.members", "no such channel of yours", member)
            if row.id == self_id:
                raise unprocessable("config.members", "a group cannot contain itself", member)
        return group.model_dump()
    try:
        channel = build_channel(type_name, config)
    except ChannelConfigError as exc:
        raise APIError(
            422,
            "invalid_field",
            str(exc),
            [{"field": exc.field, "message": exc.message, "value": exc.value}],
        ) from None
    if not runtime.settings.security.allow_private_networks:
        for url in channel.targets():
            try:
                netguard.check_url(
                    url, False, tuple(runtime.settings.security.allowed_private_targets)
                )
            except netguard.PrivateNetworkRefused as exc:
                raise unprocessable("config", str(exc)) from None
            except (OSError, ValueError):
                continue  # unresolvable now; the send-time check decides later
    return config


def _find(user_id: int, ref: str | int) -> Channel | None:
    query = Channel.select().where(Channel.user == user_id)
    ident = ref if isinstance(ref, int) else as_id(ref)
    if ident is not None:
        return query.where((Channel.id == ident) | (Channel.name == str(ref))).first()
    return query.where(Channel.name == ref).first()


def _fallback_id(user_id: int, ref: str | int | None, self_id: int | None) -> int | None:
    if ref is None:
        return None
    row = _find(user_id, ref)
    if row is None:
        raise unprocessable("fallback", "no such channel of yours", ref)
    if row.id == self_id:
        raise unprocessable("fallback", "a channel cannot be its own fallback", ref)
    return row.id


class Channels:
    def __init__(self, runtime):
        self.runtime = runtime

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = newest_page(
            req, Channel, lambda c: view(self.runtime, c), owner_filter(req, Channel)
        )

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_model(req, ChannelIn)
        user_id = req.context.principal.user_id
        config = validate_config(self.runtime, user_id, body.type, body.config)
        now = self.runtime.clock.now()
        try:
            with write_transaction():
                row = Channel.create(
                    user=user_id,
                    name=body.name,
                    type=body.type,
                    config=self.runtime.secretbox.encrypt(config),
                    enabled=body.enabled,
                    is_default=body.default,
                    fallback=_fallback_id(user_id, body.fallback, None),
                    created_at=now,
                    updated_at=now,
                )
        except IntegrityError:
            raise APIError(
                409, "name_taken", f"you already have a channel named {body.name!r}"
            ) from None
        self.runtime.ingest.channels.invalidate(user_id)
        resp.status = falcon.HTTP_201
        resp.media = view(self.runtime, row)

    def on_get_item(self, req: falcon.Request, resp: falcon.Response, channel_id: int) -> None:
        resp.media = view(self.runtime, get_owned(req, Channel, channel_id, "channel"))

    def on_patch_item(self, req: falcon.Request, resp: falcon.Response, channel_id: int) -> None:
        row = get_owned(req, Channel, channel_id, "channel")
        body = read_model(req, ChannelPatch)
        changes: dict[str, Any] = {"updated_at": self.runtime.clock.now()}
        if body.config is not None:
            merged = dict(self.runtime.secretbox.decrypt(row.config))
            for key, value in body.config.items():
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = value
            changes["config"] = self.runtime.secretbox.encrypt(
                validate_config(self.runtime, row.user_id, row.type, merged, row.id)
            )
        if body.name is not None:
            changes["name"] = body.name
        if body.enabled is not None:
            changes["enabled"] = body.enabled
        if body.default is not None:
            changes["is_default"] = body.default
        if "fallback" in body.model_fields_set:
            changes["fallback"] = _fallback_id(row.user_id, body.fallback, row.id)
        try:
            Channel.update(**changes).where(Channel.id == row.id).execute()
        except IntegrityError:
            raise APIError(
                409, "name_taken", f"you already have a channel named {body.name!r}"
            ) from None
        self.runtime.ingest.channels.invalidate(row.user_id)
        resp.media = view(self.runtime, Channel.get_by_id(row.id))

    def on_delete_item(self, req: falcon.Request, resp: falcon.Response, channel_id: int) -> None:
        row = get_owned(req, Channel, channel_id, "channel")
        row.delete_instance()
        self.runtime.ingest.channels.invalidate(row.user_id)
        resp.status = falcon.HTTP_204


class ChannelTest:
    """Sends a real test message through the channel, in the HTTP worker thread."""

    def __init__(self, runtime):
        self.runtime = runtime

    def on_post(self, req: falcon.Request, resp: falcon.Response, channel_id: int) -> None:
        row = get_owned(req, Channel, channel_id, "channel")
        if row.type == GROUP:
            raise APIError(409, "group_channel", "test the group's members one by one")
        config = self.runtime.secretbox.decrypt(row.config)
        channel = build_channel(row.type, config)
        message = OutboundMessage(
            id=0,
            title="MessagePusher test / 测试消息",
            body=f"This is a test message for channel {row.name}. 这是一条测试消息。",
            format="text",
            created_at=to_rfc3339(self.runtime.clock.now()) or "",
        )
        settings = self.runtime.settings
        transport = Transport(pool_size=1)
        try:
            ctx = SendContext(
                0,
                transport,
                settings.channel_pool.timeout_seconds,
                settings.security.allow_private_networks,
                allowed_private_targets=tuple(settings.security.allowed_private_targets),
            )
            result = channel.send(message, ctx)
        finally:
            transport.close()
        resp.media = {
            "status": result.status,
            "detail": result.detail,
            "response_code": result.response_code,
            "response": result.response,
            "retry_after": result.retry_after,
            "notes": result.notes,
        }


ROUTES = [
    Route(
        "/api/v1/channels",
        "channels:Channels",
        {
            "GET": Op("channels:read", "List your channels", query=("limit", "cursor", "user")),
            "POST": Op("channels:write", "Create a channel", ChannelIn, status=201),
        },
        tag="channels",
    ),
    Route(
        "/api/v1/channels/{channel_id}",
        "channels:Channels",
        {
            "GET": Op("channels:read", "One channel (secrets masked)"),
            "PATCH": Op("channels:write", "Change a channel; config is merged", ChannelPatch),
            "DELETE": Op("channels:write", "Delete a channel", status=204),
        },
        tag="channels",
        suffix="item",
    ),
    Route(
        "/api/v1/channels/{channel_id}/test",
        "channels:ChannelTest",
        {
            "POST": Op("channels:write", "Send a real test message through the channel"),
        },
        tag="channels",
    ),
]
