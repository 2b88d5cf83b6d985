"""`main.py import message-pusher DB`: its users, channels, push tokens (and messages) brought over.

Reads its SQLite file read-only, validates every channel through the channel registry and stores
it encrypted as the channels API does; a second run finds everything there and changes nothing.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from messagepusher.accounts.credentials import generate_password, hash_password, hash_secret
from messagepusher.accounts.credentials import legacy_prefix as token_prefix
from messagepusher.accounts.users import USERNAME
from messagepusher.actors.channels import ChannelConfigError, build_channel
from messagepusher.messages.store import import_message
from messagepusher.operations.mp_mapping import (
    MappedChannel,
    Unmappable,
    map_channel,
    message_status,
    user_disabled,
    user_role,
)
from messagepusher.outbound import netguard
from messagepusher.supervisor.db import write_transaction
from messagepusher.supervisor.models import ApiKey, Channel, Message, User

KEY_NAME = "message-pusher push token"
KEY_SCOPES = ["messages:send"]


class SourceError(Exception):
    """The file cannot be read as a message-pusher database; str() is the one line shown."""


@dataclass
class Tally:
    created: dict[str, int] = field(default_factory=dict)
    existing: int = 0
    skipped: int = 0

    def add(self, what: str) -> None:
        self.created[what] = self.created.get(what, 0) + 1


def read_source(path: str, with_messages: bool) -> dict[str, list[dict[str, Any]]]:
    """Every table the import needs, as lists of dicts; SourceError when it is not message-pusher's."""
    if not Path(path).is_file():
        raise SourceError(f"{path}: no such file; pass message-pusher's SQLite database file")
    try:
        conn = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise SourceError(f"{path}: cannot open it as SQLite: {exc}") from None
    conn.row_factory = sqlite3.Row
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not {"users", "channels"} <= tables:
            raise SourceError(
                f"{path} has no users and channels tables: it is not message-pusher's database"
            )
        wanted = ["users", "channels", "options", "webhooks"]
        if with_messages:
            wanted.append("messages")
        return {
            name: [dict(r) for r in conn.execute(f'SELECT * FROM "{name}" ORDER BY 1')]
            if name in tables
            else []
            for name in wanted
        }
    except sqlite3.DatabaseError as exc:
        raise SourceError(f"{path}: cannot read it: {exc}") from None
    finally:
        conn.close()


def mask(secret: str) -> str:
    return "****" + secret[-4:] if len(secret) > 8 else "****"


class Importer:
    """Runs in the CLI's main thread, inside one write transaction for a real run.

    `dry_run` prints the same lines and writes nothing. Database errors propagate (the
    transaction rolls back, nothing is half imported).
    """

    def __init__(self, runtime, source: dict[str, list[dict[str, Any]]], dry_run: bool, out):
        self.runtime = runtime
        self.source = source
        self.dry_run = dry_run
        self.out: TextIO = out
        self.tally = Tally()
        self.planned: dict[str, str] = {}  # token prefix -> the username it goes to in this run
        self.options = {str(o.get("key")): str(o.get("value") or "") for o in source["options"]}

    def say(self, line: str) -> None:
        self.out.write(line + "\n")

    def verb(self) -> str:
        return "would create" if self.dry_run else "create"

    def run(self) -> None:
        channels_of: dict[Any, list[dict[str, Any]]] = {}
        for row in self.source["channels"]:
            channels_of.setdefault(row.get("user_id"), []).append(row)
        messages_of: dict[Any, list[dict[str, Any]]] = {}
        for row in self.source.get("messages", []):
            messages_of.setdefault(row.get("user_id"), []).append(row)
        for user in self.source["users"]:
            target = self.user(user)
            if target is None:
                continue
            self.token(user, target)
            rows = channels_of.get(user.get("id"), [])
            # Groups last: their members must exist first.
            rows.sort(key=lambda r: (str(r.get("type")) == "group", r.get("id") or 0))
            known = self.channel_names(target)
            for row in rows:
                self.channel(row, user, target, known)
            default = str(user.get("channel") or "")
            if default and default not in known:
                self.say(
                    f"  note: the default channel {default} is not imported, so /push without "
                    "channel= finds no channel until you mark another one default"
                )
            if "messages" in self.source:
                self.messages(messages_of.get(user.get("id"), []), user, target)
        for hook in self.source["webhooks"]:
            self.tally.skipped += 1
            self.say(
                f"webhook {hook.get('name')!r} of user id {hook.get('user_id')}: NOT IMPORTED: "
                "incoming webhooks with extract/construct rules have no counterpart; recreate it by hand"
            )

    # --- users and tokens ---------------------------------------------------------------

    def user(self, row: dict[str, Any]) -> User | str | None:
        name = str(row.get("username") or "")
        role = user_role(row.get("role"))
        if not USERNAME.match(name):
            self.tally.skipped += 1
            self.say(f"user {name!r}: NOT IMPORTED: a username here is 1-64 of A-Z a-z 0-9 _ . -")
            return None
        existing = User.get_or_none(User.username == name)
        if existing is not None:
            self.tally.existing += 1
            self.say(f"user {name} -> {name} ({existing.role}): exists, kept as it is")
            return existing
        state = ", disabled" if user_disabled(row.get("status")) else ""
        self.say(f"user {name} -> {name} ({role}{state}): {self.verb()}")
        self.tally.add("users")
        if self.dry_run:
            return name
        now = self.runtime.clock.now()
        # Its bcrypt hash cannot be carried over: an unknown random password until an admin sets one.
        return User.create(
            username=name,
            password_hash=hash_password(generate_password()),
            role=role,
            disabled=user_disabled(row.get("status")),
            display_name=str(row.get("display_name") or "")[:255],
            email=str(row.get("email") or "")[:255],
            created_at=now,
            updated_at=now,
        )

    def token(self, row: dict[str, Any], target: User | str) -> None:
        token = str(row.get("token") or "").strip()
        name = row.get("username")
        if not token:
            self.say(
                f"  push token: none in message-pusher (it accepted pushes without one); "
                f"create a key for {name} before using /push/{name}"
            )
            return
        prefix = token_prefix(token)
        row_key = ApiKey.select(ApiKey, User).join(User).where(ApiKey.prefix == prefix).first()
        holder = row_key.user.username if row_key is not None else self.planned.get(prefix)
        if holder is not None and holder != name:
            self.tally.skipped += 1
            self.say(
                f"  push token {mask(token)}: NOT IMPORTED: user {holder} already has the same "
                f"token; create a key for {name}"
            )
            return
        self.planned[prefix] = name
        if row_key is not None:
            self.tally.existing += 1
            self.say(f"  push token {mask(token)} -> key {KEY_NAME!r}: exists")
            return
        self.say(
            f"  push token {mask(token)} -> key {KEY_NAME!r} (scope messages:send): {self.verb()}"
        )
        self.tally.add("keys")
        if isinstance(target, User):
            ApiKey.create(
                user=target,
                name=KEY_NAME,
                prefix=prefix,
                secret_hash=hash_secret(token),
                scopes=KEY_SCOPES,
                enabled=True,
                created_at=self.runtime.clock.now(),
            )

    # --- channels -------------------------------------------------------------------------

    def channel_names(self, target: User | str) -> set[str]:
        if not isinstance(target, User):
            return set()
        return {c.name for c in Channel.select(Channel.name).where(Channel.user == target.id)}

    def channel(
        self, row: dict[str, Any], user: dict[str, Any], target: User | str, known: set[str]
    ) -> None:
        name = str(row.get("name") or "")
        head = f"  channel {name} ({row.get('type')})"
        if name in known and isinstance(target, User):
            self.tally.existing += 1
            self.say(f"{head}: exists, kept as it is")
            return
        try:
            mapped = map_channel(row, user, self.options)
            self.check(mapped, known)
        except (Unmappable, ChannelConfigError) as exc:
            self.tally.skipped += 1
            self.say(f"{head}: NOT IMPORTED: {exc}")
            return
        default = name == str(user.get("channel") or "")
        enabled = str(row.get("status")) != "2"
        flags = ", default" if default else ""
        flags += "" if enabled else ", disabled"
        fields = ", ".join(sorted(mapped.config)) or "no settings"
        self.say(f"{head} -> {name} ({mapped.type}: {fields}{flags}): {self.verb()}")
        for note in mapped.notes:
            self.say(f"    note: {note}")
        if str(row.get("token") or "").strip():
            self.say(
                "    note: its channel token is not imported: keys here belong to a user, "
                "not to one channel; use the user's push token or a new key"
            )
        known.add(name)
        self.tally.add("channels")
        if isinstance(target, User):
            self.store(row, target, mapped, default, enabled)

    def check(self, mapped: MappedChannel, known: set[str]) -> None:
        """Validate as the channels API does: the registry's schema, then the private-network rule."""
        if mapped.type == "group":
            missing = [m for m in mapped.members if m not in known]
            if missing:
                raise Unmappable(f"its members {', '.join(missing)} are not imported")
            return
        channel = build_channel(mapped.type, mapped.config)
        security = self.runtime.settings.security
        if security.allow_private_networks:
            return
        for url in channel.targets():
            try:
                netguard.check_url(url, False, tuple(security.allowed_private_targets))
            except netguard.PrivateNetworkRefused as exc:
                raise Unmappable(str(exc)) from None
            except (OSError, ValueError):
                continue  # unresolvable now; the send-time check decides later

    def store(
        self, row: dict[str, Any], target: User, mapped: MappedChannel, default: bool, enabled: bool
    ) -> None:
        created = row.get("created_time")
        now = self.runtime.clock.now()
        Channel.create(
            user=target.id,
            name=str(row.get("name")),
            type=mapped.type,
            config=self.runtime.secretbox.encrypt(mapped.config),
            enabled=enabled,
            is_default=default,
            created_at=float(created) if isinstance(created, int | float) and created > 0 else now,
            updated_at=now,
        )

    # --- messages -------------------------------------------------------------------------

    def messages(self, rows: list[dict[str, Any]], user: dict[str, Any], target: User | str):
        if not rows:
            return
        created = existing = 0
        for row in rows:
            key = f"message-pusher:{row.get('id')}"
            if isinstance(target, User) and (
                Message.select()
                .where((Message.user == target.id) & (Message.idempotency_key == key))
                .exists()
            ):
                existing += 1
                continue
            created += 1
            if isinstance(target, User):
                self.store_message(row, target, key)
        self.tally.existing += existing
        for _ in range(created):
            self.tally.add("messages")
        self.say(
            f"  messages: {created} {'to create' if self.dry_run else 'created'}, {existing} exist"
        )

    def store_message(self, row: dict[str, Any], target: User, key: str) -> None:
        content = str(row.get("content") or "")
        at = row.get("timestamp")
        at = float(at) if isinstance(at, int | float) and at > 0 else self.runtime.clock.now()
        status = message_status(row.get("status"))
        import_message(
            target.id,
            str(row.get("title") or ""),
            content or str(row.get("description") or ""),
            "markdown" if content else "text",
            str(row.get("url") or "") or None,
            status,
            key,
            at,
            {"from": "message-pusher", "id": row.get("id"), "channel": row.get("channel")},
        )


def run_import(runtime, path: str, dry_run: bool, with_messages: bool, out: TextIO) -> int:
    """Print the mapping and (unless `dry_run`) apply it; 0 when done, SourceError if unreadable."""
    source = read_source(path, with_messages)
    counts = ", ".join(f"{len(rows)} {name}" for name, rows in source.items())
    out.write(f"message-pusher database {path}: {counts}\n")
    importer = Importer(runtime, source, dry_run, out)
    if dry_run:
        importer.run()
    else:
        with write_transaction():
            importer.run()
    tally = importer.tally
    made = ", ".join(f"{n} {what}" for what, n in tally.created.items()) or "nothing"
    verb = "would create" if dry_run else "created"
    out.write(
        f"summary: {verb} {made}; {tally.existing} already here; "
        f"{tally.skipped} not imported (reasons above)\n"
    )
    if dry_run:
        out.write("dry run: nothing was changed\n")
    return 0
