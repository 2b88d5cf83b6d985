"""Numbered schema migrations: a schema_version row per applied step, applied in order.

A release adds a step at the end; a database made by any earlier release upgrades in place.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import peewee
from playhouse.migrate import SchemaMigrator
from playhouse.migrate import migrate as migrate_columns

from messagepusher.supervisor import timefmt
from messagepusher.supervisor.db import write_transaction
from messagepusher.supervisor.mailbox import create_claim_index
from messagepusher.supervisor.models import (
    CLUSTER_MODELS,
    NODE_MODELS,
    PAUSE_MODELS,
    V1_MODELS,
    V2_MODELS,
    V9_MODELS,
    AccessToken,
    ApiKey,
    AuditLog,
    Delivery,
    InboxItem,
    JobRun,
    MailboxEntry,
    Message,
    SchemaVersion,
    User,
)

log = logging.getLogger(__name__)

MIGRATION_LOCK = 8080001  # the session lock two starting processes queue on


def _initial_schema(db: peewee.Database) -> None:
    db.create_tables(V1_MODELS, safe=True)
    create_claim_index(db)


def _operations_tables(db: peewee.Database) -> None:
    db.create_tables(V2_MODELS, safe=True)


def _add_missing_columns(
    db: peewee.Database, table: str, columns: tuple[tuple[str, peewee.Field], ...]
) -> None:
    # Steps 1 and 2 create tables from the current models, so a new database already has the
    # columns of a later step: add only what is missing.
    have = db.dialect.columns(table)
    migrator = SchemaMigrator.from_database(db)
    steps = [migrator.add_column(table, name, field) for name, field in columns if name not in have]
    if steps:
        migrate_columns(*steps)


def _job_run_period_and_detail(db: peewee.Database) -> None:
    _add_missing_columns(
        db,
        JobRun._meta.table_name,
        (("period_key", peewee.CharField(default="")), ("detail", peewee.TextField(null=True))),
    )


def _user_totp_last_step(db: peewee.Database) -> None:
    _add_missing_columns(
        db, User._meta.table_name, (("totp_last_step", peewee.IntegerField(null=True)),)
    )


def _audit_action_index(db: peewee.Database) -> None:
    # GET /api/v1/admin/audit?action=… pages newest first; the index (with the row id) serves both.
    AuditLog._schema.create_indexes(safe=True)


def _access_tokens_and_recipients(db: peewee.Database) -> None:
    db.create_tables([AccessToken], safe=True)
    _add_missing_columns(
        db, Message._meta.table_name, (("recipients", peewee.TextField(null=True)),)
    )


def _times_into_window(db: peewee.Database) -> None:
    # Before the one time rule, send_at and a key's expires_at could be any year 1 to 9999 in
    # any zone, i.e. outside what renders in UTC. Clamping keeps each one's meaning: a send far
    # in the past is due now, one beyond year 9999 never comes, an expiry likewise.
    for model, column in ((Message, Message.send_at), (ApiKey, ApiKey.expires_at)):
        model.update({column: timefmt.LATEST}).where(column > timefmt.LATEST).execute()
        model.update({column: timefmt.EARLIEST}).where(column < timefmt.EARLIEST).execute()


def _inbox_table(db: peewee.Database) -> None:
    db.create_tables([InboxItem], safe=True)


def _schedules_hooks_remote_ids(db: peewee.Database) -> None:
    db.create_tables(V9_MODELS, safe=True)
    _add_missing_columns(
        db, Delivery._meta.table_name, (("remote_id", peewee.CharField(null=True)),)
    )


def _inbox_recalled(db: peewee.Database) -> None:
    _add_missing_columns(
        db, InboxItem._meta.table_name, (("recalled_at", peewee.DoubleField(null=True)),)
    )


def _cluster_state(db: peewee.Database) -> None:
    db.create_tables(CLUSTER_MODELS, safe=True)


def _pauses_and_public_pages(db: peewee.Database) -> None:
    db.create_tables(PAUSE_MODELS, safe=True)
    _add_missing_columns(
        db,
        Message._meta.table_name,
        (("public_token", peewee.CharField(max_length=64, null=True, unique=True)),),
    )
    # "cancelled" (a task cancelled by hand) does not fit the old VARCHAR(8).
    db.dialect.widen_varchar(MailboxEntry._meta.table_name, "state", 16)


def _node_registry(db: peewee.Database) -> None:
    db.create_tables(NODE_MODELS, safe=True)


MIGRATIONS: list[tuple[int, str, Callable[[peewee.Database], None]]] = [
    (1, "initial schema", _initial_schema),
    (2, "operations: job locks and runs, config versions, alerts, reports", _operations_tables),
    (3, "audit log: index on action", _audit_action_index),
    (4, "job runs: period key and outcome detail", _job_run_period_and_detail),
    (5, "users: last used TOTP time step", _user_totp_last_step),
    (6, "send_at and key expiry clamped into the time window", _times_into_window),
    (7, "shared access-token cache; message recipients", _access_tokens_and_recipients),
    (8, "inbox: messages stored for the client channel's devices", _inbox_table),
    (9, "schedules, hooks and delivery remote ids", _schedules_hooks_remote_ids),
    (10, "inbox: recalled items", _inbox_recalled),
    (11, "shared rate-limit buckets and cluster stamps", _cluster_state),
    (12, "pauses of mailboxes and channels; public message page tokens", _pauses_and_public_pages),
    (13, "node registry: every process with its heartbeat", _node_registry),
]

LATEST = MIGRATIONS[-1][0]


def current_version(db: peewee.Database) -> int:
    if not db.dialect.table_exists(SchemaVersion._meta.table_name):
        return 0
    row = SchemaVersion.select(peewee.fn.MAX(SchemaVersion.version)).scalar()
    return row or 0


def migrate(db: peewee.Database, target: int = LATEST) -> list[int]:
    """Apply every step above the current version up to `target`; return the applied numbers.

    Runs in the caller's thread; each step and its version row commit together, so a
    crash mid-upgrade leaves the database at the last whole step. A session lock (advisory
    on PostgreSQL) keeps two starting processes from migrating at once.
    """
    applied: list[int] = []
    if current_version(db) >= target:
        # Every start but the first after an upgrade: one read, no write lock to wait for
        # while another process of this node holds it.
        return applied
    with db.dialect.session_lock(MIGRATION_LOCK):
        for number, name, step in MIGRATIONS:
            if number > target:
                break
            with write_transaction(db):
                if current_version(db) >= number:
                    continue
                step(db)
                SchemaVersion.create(version=number, name=name, applied_at=time.time())
            log.info("schema migration %d applied: %s", number, name)
            applied.append(number)
    return applied
