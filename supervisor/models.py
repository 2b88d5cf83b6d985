"""Peewee models for every stored entity, bound to the process-wide database proxy.

Times are float epoch seconds (UTC); JSON columns hold plain dicts and lists.
"""

from __future__ import annotations

import json
from typing import Any

import peewee

from messagepusher.supervisor.db import database


class JSONField(peewee.TextField):
    """A TEXT column holding JSON; None stays NULL."""

    def db_value(self, value: Any) -> str | None:
        if value is None:
            return None
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    def python_value(self, value: str | None) -> Any:
        return None if value is None else json.loads(value)


Time = peewee.DoubleField


class BaseModel(peewee.Model):
    class Meta:
        database = database
        legacy_table_names = False


class SchemaVersion(BaseModel):
    version = peewee.IntegerField(primary_key=True)
    name = peewee.CharField()
    applied_at = Time()


class User(BaseModel):
    username = peewee.CharField(max_length=64, unique=True)
    password_hash = peewee.CharField()
    role = peewee.CharField(max_length=16, default="user")
    disabled = peewee.BooleanField(default=False)
    display_name = peewee.CharField(default="")
    email = peewee.CharField(default="")
    preferences = JSONField(default=dict)
    totp_secret = peewee.TextField(null=True)
    totp_enabled = peewee.BooleanField(default=False)
    # The latest 30 s TOTP step already used; a code of this step or an earlier one is refused.
    totp_last_step = peewee.IntegerField(null=True)
    created_at = Time()
    updated_at = Time()


class ApiKey(BaseModel):
    user = peewee.ForeignKeyField(User, on_delete="CASCADE", backref="keys")
    name = peewee.CharField(default="")
    prefix = peewee.CharField(max_length=32, unique=True)
    secret_hash = peewee.CharField()
    scopes = JSONField(default=list)
    enabled = peewee.BooleanField(default=True)
    created_at = Time()
    expires_at = Time(null=True)
    last_used_at = Time(null=True)


class WebSession(BaseModel):
    user = peewee.ForeignKeyField(User, on_delete="CASCADE")
    token_hash = peewee.CharField(unique=True)
    csrf_token = peewee.CharField()
    address = peewee.CharField(default="")
    created_at = Time()
    expires_at = Time(index=True)


class LoginFailure(BaseModel):
    key = peewee.CharField(primary_key=True)
    failures = peewee.IntegerField(default=0)
    locked_until = Time(null=True)
    last_at = Time()


class Channel(BaseModel):
    user = peewee.ForeignKeyField(User, on_delete="CASCADE", backref="channels")
    name = peewee.CharField(max_length=64)
    type = peewee.CharField(max_length=32)
    config = peewee.TextField()  # encrypted JSON (Fernet token)
    enabled = peewee.BooleanField(default=True)
    is_default = peewee.BooleanField(default=False)
    fallback = peewee.ForeignKeyField("self", null=True, on_delete="SET NULL")
    created_at = Time()
    updated_at = Time()

    class Meta:
        indexes = ((("user", "name"), True),)


class Message(BaseModel):
    user = peewee.ForeignKeyField(User, on_delete="CASCADE", backref="messages")
    title = peewee.TextField(default="")
    body = peewee.TextField(default="")
    format = peewee.CharField(max_length=16, default="text")
    url = peewee.TextField(null=True)
    priority = peewee.SmallIntegerField(default=3)
    status = peewee.CharField(max_length=24)
    accepted_status = peewee.CharField(max_length=24)
    ai_request = JSONField(null=True)
    send_at = Time(null=True)
    callback_url = peewee.TextField(null=True)
    idempotency_key = peewee.CharField(null=True)
    request_hash = peewee.CharField(null=True)
    fetched = JSONField(null=True)
    ai_result = JSONField(null=True)
    recipients = JSONField(null=True)  # a list that replaces the channel's own (compat `to`)
    created_at = Time()
    updated_at = Time()
    finished_at = Time(null=True)
    # added by migration 11: the unguessable key of the public page /m/{token}
    public_token = peewee.CharField(max_length=64, null=True, unique=True)

    class Meta:
        indexes = (
            (("user", "created_at"), False),
            (("user", "status", "created_at"), False),
            (("user", "idempotency_key"), True),
            (("created_at",), False),
        )


class Delivery(BaseModel):
    message = peewee.ForeignKeyField(Message, on_delete="CASCADE", backref="deliveries")
    channel = peewee.ForeignKeyField(Channel, null=True, on_delete="SET NULL")
    channel_name = peewee.CharField()
    channel_type = peewee.CharField(max_length=32)
    status = peewee.CharField(max_length=16, default="pending")
    attempts = peewee.IntegerField(default=0)
    last_error = peewee.TextField(null=True)
    response_code = peewee.IntegerField(null=True)
    response = peewee.TextField(null=True)
    fallback_of = peewee.ForeignKeyField("self", null=True, on_delete="SET NULL")
    created_at = Time()
    updated_at = Time()
    sent_at = Time(null=True)
    # added by migration 9: the id the service gave the message, for recall and edit
    remote_id = peewee.CharField(null=True)

    class Meta:
        indexes = ((("channel", "status"), False),)


class MessageEvent(BaseModel):
    message = peewee.ForeignKeyField(Message, on_delete="CASCADE", backref="events")
    at = Time(index=True)
    type = peewee.CharField(max_length=48)
    detail = JSONField(null=True)


class MailboxEntry(BaseModel):
    recipient = peewee.CharField(max_length=32)
    kind = peewee.CharField(max_length=32)
    payload = JSONField(default=dict)
    priority = peewee.SmallIntegerField(default=3)
    state = peewee.CharField(max_length=16, default="ready")  # 8 before migration 12
    available_at = Time()
    lease_owner = peewee.CharField(null=True)
    lease_expires_at = Time(null=True)
    attempts = peewee.IntegerField(default=0)
    max_attempts = peewee.IntegerField(default=5)
    last_error = peewee.TextField(null=True)
    dedupe_key = peewee.CharField(null=True, unique=True)
    user_id = peewee.IntegerField(null=True, index=True)
    created_at = Time()
    updated_at = Time()

    class Meta:
        table_name = "mailbox"
        indexes = (
            (("recipient", "state", "priority", "id"), False),
            (("state", "updated_at"), False),
        )


class AccessToken(peewee.Model):
    """One cached service access token (accounts/access_tokens.py). `key` is a hash of the credential, never the credential itself."""

    key = peewee.CharField(max_length=64, primary_key=True)
    token = peewee.TextField(default="")
    expires_at = peewee.DoubleField(default=0)
    lease_until = peewee.DoubleField(default=0)  # a process is fetching a new token until then
    updated_at = peewee.DoubleField(default=0)

    class Meta:
        database = database
        table_name = "access_token"


class SupervisorEvent(BaseModel):
    at = Time(index=True)
    actor = peewee.CharField(max_length=32)
    event = peewee.CharField(max_length=16)
    detail = peewee.TextField(default="")
    node = peewee.CharField(default="")


class AuditLog(BaseModel):
    at = Time(index=True)
    user_id = peewee.IntegerField(null=True, index=True)
    username = peewee.CharField(default="")
    role = peewee.CharField(default="")
    action = peewee.CharField(max_length=64, index=True)  # index added by migration 3
    target = peewee.CharField(default="")
    outcome = peewee.CharField(max_length=16, default="ok")
    address = peewee.CharField(default="")
    detail = JSONField(null=True)


# --- tables added by migration 2 (operations) ---


class JobLock(BaseModel):
    name = peewee.CharField(primary_key=True)
    owner = peewee.CharField()
    period_key = peewee.CharField(default="")
    expires_at = Time()


class JobRun(BaseModel):
    name = peewee.CharField(max_length=64, index=True)
    owner = peewee.CharField(default="")
    started_at = Time(index=True)
    finished_at = Time(null=True)
    outcome = peewee.CharField(max_length=16, default="running")
    error = peewee.TextField(null=True)
    duration_seconds = peewee.DoubleField(null=True)
    # added by migration 4
    period_key = peewee.CharField(default="")
    detail = JSONField(null=True)


class ConfigVersion(BaseModel):
    version = peewee.IntegerField(unique=True)
    at = Time()
    user_id = peewee.IntegerField(null=True)
    username = peewee.CharField(default="")
    diff = JSONField(default=dict)
    values = JSONField(default=dict)
    comment = peewee.CharField(default="")


class Alert(BaseModel):
    rule = peewee.CharField(max_length=48)
    key = peewee.CharField(default="")
    severity = peewee.CharField(max_length=16, default="warning")
    state = peewee.CharField(max_length=16, default="firing")
    message = peewee.TextField(default="")
    first_at = Time()
    last_at = Time()
    resolved_at = Time(null=True)
    notified_at = Time(null=True)
    acknowledged_by = peewee.CharField(null=True)
    acknowledged_at = Time(null=True)
    count = peewee.IntegerField(default=1)

    class Meta:
        indexes = ((("rule", "key", "state"), False),)


class Report(BaseModel):
    day = peewee.CharField(max_length=10)
    scope = peewee.CharField(max_length=16)
    user_id = peewee.IntegerField(null=True)
    data = JSONField(default=dict)
    created_at = Time()

    class Meta:
        indexes = ((("day", "scope", "user_id"), False),)


# --- table added by migration 8 (the client channel's inbox) ---


class InboxItem(BaseModel):
    """One message stored for a user's own devices; the id is the SSE event id they resume from."""

    user = peewee.ForeignKeyField(User, on_delete="CASCADE")
    message = peewee.ForeignKeyField(Message, on_delete="CASCADE")
    delivery_id = peewee.IntegerField(unique=True)  # a replayed send stores nothing twice
    channel_id = peewee.IntegerField(null=True)
    channel_name = peewee.CharField(default="")
    channel_type = peewee.CharField(max_length=32)
    title = peewee.TextField(default="")
    body = peewee.TextField(default="")
    format = peewee.CharField(max_length=16, default="text")
    url = peewee.TextField(null=True)
    priority = peewee.SmallIntegerField(default=3)
    created_at = Time()
    read_at = Time(null=True)
    # A recall empties the row and keeps it: SQLite gives a freed top id to the next insert,
    # and a device that saw that id would skip the new item.
    recalled_at = Time(null=True)

    class Meta:
        table_name = "inbox"
        indexes = ((("user", "id"), False),)


# --- tables added by migration 9 (recurring messages, incoming webhooks) ---


class Schedule(BaseModel):
    """A recurring message: `message` is a POST /api/v1/messages body, sent at each fire."""

    user = peewee.ForeignKeyField(User, on_delete="CASCADE", backref="schedules")
    name = peewee.CharField(max_length=64)
    cron = peewee.CharField(null=True)
    every_seconds = peewee.IntegerField(null=True)
    timezone = peewee.CharField(max_length=64)
    message = JSONField(default=dict)
    enabled = peewee.BooleanField(default=True)
    misfire_grace_seconds = peewee.IntegerField(default=300)
    # Bumped by every change of timing or state; a queued fire of an older revision is dropped.
    revision = peewee.IntegerField(default=1)
    last_fire_at = Time(null=True)
    created_at = Time()
    updated_at = Time()

    class Meta:
        indexes = ((("user", "name"), True),)


class ScheduleFire(BaseModel):
    """What became of one fire time: sent (with its message), failed, or missed."""

    schedule = peewee.ForeignKeyField(Schedule, on_delete="CASCADE", backref="fires")
    fire_at = Time()
    outcome = peewee.CharField(max_length=16)
    message_id = peewee.IntegerField(null=True)
    detail = JSONField(null=True)
    at = Time()

    class Meta:
        indexes = ((("schedule", "fire_at"), True),)


class Hook(BaseModel):
    """An incoming webhook: a secret URL whose payloads a template or preset turns into messages."""

    user = peewee.ForeignKeyField(User, on_delete="CASCADE", backref="hooks")
    name = peewee.CharField(max_length=64)
    token_hash = peewee.CharField(unique=True)
    template = JSONField(null=True)
    preset = peewee.CharField(max_length=32, null=True)
    channels = JSONField(null=True)
    priority = peewee.SmallIntegerField(null=True)
    created_at = Time()
    updated_at = Time()
    last_used_at = Time(null=True)
    # The latest payload the template failed on (its message went out with the raw payload).
    last_error = peewee.TextField(null=True)
    last_error_at = Time(null=True)

    class Meta:
        indexes = ((("user", "name"), True),)


class RateBucket(BaseModel):
    """A token bucket every process and node takes from (supervisor/ratelimit.SharedBuckets).

    `granted` is what the last take got, so one UPDATE … RETURNING answers it.
    """

    name = peewee.CharField(primary_key=True, max_length=255)
    tokens = peewee.DoubleField()
    stamp = Time()
    granted = peewee.DoubleField(default=0)


class ClusterStamp(BaseModel):
    """A counter each process compares with what it cached: bumped when that shared state changes."""

    name = peewee.CharField(primary_key=True, max_length=64)
    value = peewee.BigIntegerField(default=0)


# --- table added by migration 12 (pauses) ---


class Pause(BaseModel):
    """A paused mailbox or channel: its work stays ready and is not claimed, on every node."""

    mailbox = peewee.CharField(max_length=32, null=True, unique=True)
    channel = peewee.ForeignKeyField(Channel, null=True, unique=True, on_delete="CASCADE")
    paused_by = peewee.CharField(default="")
    paused_at = Time()


# --- table added by migration 13 (node registry) ---


class Node(BaseModel):
    """One process of the cluster: a root, a worker, or a process serving alone (kind)."""

    id = peewee.CharField(primary_key=True, max_length=255)  # host:pid:start time, as leases
    name = peewee.CharField(max_length=63)  # server.node_name
    host = peewee.CharField(max_length=255)
    pid = peewee.IntegerField()
    kind = peewee.CharField(max_length=8)  # root, worker or single
    role = peewee.CharField(max_length=8)
    process_index = peewee.IntegerField()  # 0 for a root or a single process, 1..N for workers
    started_at = Time()
    last_seen = Time(index=True)
    version = peewee.CharField(max_length=32)
    config_version = peewee.IntegerField(default=0)
    state = peewee.CharField(max_length=16, default="running")  # running, stopping
    components = JSONField(default=dict)


V1_MODELS = [
    SchemaVersion,
    User,
    ApiKey,
    WebSession,
    LoginFailure,
    Channel,
    Message,
    Delivery,
    MessageEvent,
    MailboxEntry,
    SupervisorEvent,
    AuditLog,
]
V2_MODELS = [JobLock, JobRun, ConfigVersion, Alert, Report]
INBOX_MODELS = [InboxItem]
V9_MODELS = [Schedule, ScheduleFire, Hook]
CLUSTER_MODELS = [RateBucket, ClusterStamp]
PAUSE_MODELS = [Pause]
NODE_MODELS = [Node]
ALL_MODELS = (
    V1_MODELS + V2_MODELS + INBOX_MODELS + V9_MODELS + CLUSTER_MODELS + PAUSE_MODELS + NODE_MODELS
)
