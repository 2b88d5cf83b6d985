"""The schedules actor's fire, driven synchronously on a real SQLite file with an injected clock."""

from __future__ import annotations

from dataclasses import dataclass, field

from messagepusher.actors.ingest import Accepted, Draft
from messagepusher.actors.schedule_runner import fire_key, queue_next, run_fire
from messagepusher.supervisor.mailbox import Mailbox
from messagepusher.supervisor.models import MailboxEntry, Message, Schedule, ScheduleFire, User

T0 = 1_800_000_000.0  # a fire time on a 60 s grid


@dataclass
class Ingest:
    """Stands in for the ingest actor: records the drafts and gives ids (the server tests use the real one)."""

    drafts: list[Draft] = field(default_factory=list)

    def accept(self, draft: Draft) -> Accepted:
        self.drafts.append(draft)
        return Accepted(1000 + len(self.drafts), "queued")


@dataclass
class Runtime:
    mailbox: Mailbox
    ingest: Ingest = field(default_factory=Ingest)

    def wake(self, name: str) -> None:
        pass


def schedule(**kw) -> Schedule:
    user = User.create(username="ann", password_hash="x", created_at=T0, updated_at=T0)
    values = {
        "user": user,
        "name": "tick",
        "every_seconds": 60,
        "timezone": "UTC",
        "message": {"title": "tick", "channels": ["hook"]},
        "created_at": T0,
        "updated_at": T0,
        **kw,
    }
    return Schedule.create(**values)


def queued() -> list[dict]:
    return [e.payload for e in MailboxEntry.select().where(MailboxEntry.recipient == "schedules")]


def test_a_fire_on_time_sends_one_message_with_the_fires_key_and_queues_the_next(db):
    runtime = Runtime(Mailbox(db))
    s = schedule()
    payload = {"schedule_id": s.id, "revision": 1, "fire_at": T0}
    assert run_fire(runtime, payload, now=T0 + 0.4) == "sent"
    assert [d.idempotency_key for d in runtime.ingest.drafts] == [fire_key(s.id, T0)]
    assert runtime.ingest.drafts[0].channels == ["hook"]
    assert queued() == [{"schedule_id": s.id, "revision": 1, "fire_at": T0 + 60}]
    run_fire(runtime, payload, now=T0 + 0.5)  # the same fire again (a lease taken over)
    assert len(queued()) == 1  # the next fire is queued once
    assert ScheduleFire.select().count() == 1


def test_a_fire_of_an_older_revision_or_a_disabled_schedule_is_dropped(db):
    runtime = Runtime(Mailbox(db))
    s = schedule(revision=2)
    assert run_fire(runtime, {"schedule_id": s.id, "revision": 1, "fire_at": T0}, T0) is None
    Schedule.update(enabled=False).execute()
    assert run_fire(runtime, {"schedule_id": s.id, "revision": 2, "fire_at": T0}, T0) is None
    assert runtime.ingest.drafts == [] and queued() == []


def test_a_late_fire_whose_message_an_earlier_run_stored_is_recorded_sent_not_missed(db):
    runtime = Runtime(Mailbox(db))
    s = schedule(misfire_grace_seconds=1)
    stored = Message.create(
        user=s.user_id,
        title="tick",
        status="queued",
        accepted_status="queued",
        idempotency_key=fire_key(s.id, T0),
        created_at=T0,
        updated_at=T0,
    )
    assert run_fire(runtime, {"schedule_id": s.id, "revision": 1, "fire_at": T0}, T0 + 90) == "sent"
    fire = ScheduleFire.get()
    assert (fire.outcome, fire.message_id) == ("sent", stored.id)
    assert runtime.ingest.drafts == []


def test_a_long_outage_is_one_missed_record_and_the_schedule_resumes_within_grace(db):
    runtime = Runtime(Mailbox(db))
    s = schedule(misfire_grace_seconds=120)
    now = T0 + 3600 + 30
    assert run_fire(runtime, {"schedule_id": s.id, "revision": 1, "fire_at": T0}, now) == "missed"
    fire = ScheduleFire.get()
    assert fire.detail["missed_until"] and fire.message_id is None
    # the first fire no more than 120 s before now (T0 + 3630): T0 + 3540
    assert queued() == [{"schedule_id": s.id, "revision": 1, "fire_at": T0 + 3540}]


def test_queue_next_skips_a_disabled_schedule(db):
    s = schedule(enabled=False)
    queue_next(Mailbox(db), s, T0 + 60)
    assert queued() == []
