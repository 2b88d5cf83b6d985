"""The inbox: messages stored for a user's own devices by the client and none channels.

Owns every write to the inbox table. Ids only grow in commit order, so a device resumes after the last id it saw.
A recall empties the delivery's row and hides it, an edit rewrites its title and body in place.
"""

from __future__ import annotations

from messagepusher.supervisor.db import database, execute, select_rows, write_transaction
from messagepusher.supervisor.models import InboxItem

# The message as it is when the delivery is sent; a replayed send (same delivery) stores nothing.
STORE = """
    INSERT INTO inbox (user_id, message_id, delivery_id, channel_id, channel_name, channel_type,
                       title, body, format, url, priority, created_at)
    SELECT m.user_id, m.id, d.id, d.channel_id, d.channel_name, d.channel_type,
           m.title, m.body, m.format, m.url, m.priority, ?
      FROM delivery d JOIN message m ON m.id = d.message_id
     WHERE d.id = ?
    ON CONFLICT (delivery_id) DO NOTHING"""

STORED = "SELECT id FROM inbox WHERE delivery_id = ?"

# Streams send rows of these channel types; `none` rows are only listed.
STREAMED_TYPES = ("client",)


def store(delivery_id: int, now: float) -> int | None:
    """Store the delivery's message in its owner's inbox; the inbox id, or None if the delivery is gone.

    Runs in a channel-pool worker thread, one short write transaction; database errors
    propagate (the pool retries the send). On PostgreSQL the table is locked for the
    insert, because sequence values are taken before commit: without the lock a reader
    could see id 11 committed before id 10 and resume past 10 for good.
    """
    with write_transaction():
        database.dialect.serialize_inserts("inbox")
        execute(STORE, (now, delivery_id))
        rows = select_rows(STORED, (delivery_id,))
    return rows[0][0] if rows else None


def streamed_after(
    user_id: int, after_id: int, limit: int = 100, channel: str | None = None
) -> list[InboxItem]:
    """The user's streamed rows above `after_id`, oldest first (optionally of one channel name);
    recalled rows are left out.

    Any thread; read only.
    """
    query = (
        InboxItem.select()
        .where(
            (InboxItem.user == user_id)
            & (InboxItem.id > after_id)
            & (InboxItem.channel_type.in_(STREAMED_TYPES))
            & InboxItem.recalled_at.is_null()
        )
        .order_by(InboxItem.id)
        .limit(limit)
    )
    if channel:
        query = query.where(InboxItem.channel_name == channel)
    return list(query)


def last_id() -> int:
    """The highest inbox id so far (0 when empty): where a stream without Last-Event-ID starts."""
    rows = select_rows("SELECT MAX(id) FROM inbox")
    return rows[0][0] or 0


def mark_read(item_id: int, now: float) -> None:
    """Mark one row read (the first time only). Runs in an HTTP worker thread."""
    InboxItem.update(read_at=now).where(
        (InboxItem.id == item_id) & InboxItem.read_at.is_null()
    ).execute()


def remove(delivery_id: int, now: float) -> bool:
    """Recall the delivery's row: it is emptied and marked recalled, and no listing or stream
    shows it again. False when there is none, or it was recalled already.

    The row stays so its id is never given to a later item (see InboxItem.recalled_at).
    Runs in an HTTP worker thread; database errors propagate.
    """
    updated = (
        InboxItem.update(recalled_at=now, title="", body="", url=None)
        .where((InboxItem.delivery_id == delivery_id) & InboxItem.recalled_at.is_null())
        .execute()
    )
    return updated > 0


def rewrite(delivery_id: int, title: str, body: str) -> bool:
    """Replace the title and body of the delivery's row (an edit); False when there is none
    or it was recalled.

    The id stays, so a stream does not send the row again. HTTP worker thread; database
    errors propagate.
    """
    updated = (
        InboxItem.update(title=title, body=body)
        .where((InboxItem.delivery_id == delivery_id) & InboxItem.recalled_at.is_null())
        .execute()
    )
    return updated > 0
