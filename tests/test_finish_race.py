"""Two processes finishing the last deliveries of one message on PostgreSQL at the same moment.

Each transaction marks its own delivery sent and then asks `finish_if_final`. Without a
lock on the message, each sees the other's delivery still `sending` (not yet committed)
and neither writes the final status: the message would stay `sending` for ever.
"""

from __future__ import annotations

import threading
import time

import psycopg2
from conftest import POSTGRES_URL

from messagepusher.actors.channel_pool import finish_if_final
from messagepusher.supervisor.db import execute, open_database, write_transaction
from messagepusher.supervisor.mailbox import Mailbox
from messagepusher.supervisor.migrations import migrate
from messagepusher.supervisor.models import Delivery, Message, MessageEvent, User

WAIT_SECONDS = 10


def _message_with_two_sending_deliveries() -> tuple[int, list[int]]:
    now = time.time()
    user = User.create(username="racer", password_hash="x", created_at=now, updated_at=now)
    message = Message.create(
        user=user, status="sending", accepted_status="queued", created_at=now, updated_at=now
    )
    ids = [
        Delivery.create(
            message=message,
            channel_name=f"c{n}",
            channel_type="webhook",
            status="sending",
            created_at=now,
            updated_at=now,
        ).id
        for n in (1, 2)
    ]
    return message.id, ids


def _lock_waiters() -> int:
    """Sessions waiting for a row lock in a FOR UPDATE (the second finisher, once it blocks)."""
    conn = psycopg2.connect(POSTGRES_URL)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE '%%FOR UPDATE%%'"
            )
            return cur.fetchone()[0]
    finally:
        conn.close()


def test_concurrent_last_deliveries_give_the_message_one_final_status(postgres_url) -> None:
    url, _schema = postgres_url
    db = open_database(url)
    db.connect()
    migrate(db)
    mailbox = Mailbox(db)
    message_id, (first, second) = _message_with_two_sending_deliveries()
    first_checked, commit_first = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def finish(
        delivery_id: int, before_commit: threading.Event | None, after_check: threading.Event | None
    ):
        try:
            with write_transaction():
                execute("UPDATE delivery SET status = 'sent' WHERE id = ?", (delivery_id,))
                finish_if_final(mailbox, {message_id}, time.time())
                if after_check is not None:
                    after_check.set()
                if before_commit is not None:
                    assert before_commit.wait(WAIT_SECONDS)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            db.close()

    one = threading.Thread(target=finish, args=(first, commit_first, first_checked))
    one.start()
    assert first_checked.wait(WAIT_SECONDS)
    two = threading.Thread(target=finish, args=(second, None, None))
    two.start()
    deadline = time.monotonic() + WAIT_SECONDS
    while _lock_waiters() == 0 and time.monotonic() < deadline and two.is_alive():
        time.sleep(0.02)
    commit_first.set()
    one.join(WAIT_SECONDS)
    two.join(WAIT_SECONDS)
    assert not errors, errors
    db.connect(reuse_if_open=True)
    assert Message.get_by_id(message_id).status == "delivered"
    finals = MessageEvent.select().where(
        (MessageEvent.message == message_id) & (MessageEvent.type == "delivered")
    )
    assert finals.count() == 1
    db.close()
