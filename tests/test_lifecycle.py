"""The message state machine: the first stage, the stage after a fetch, the initial status,
the final status from the deliveries, and which statuses can still be cancelled or retried.

Pure functions: no database, no actors.
"""

from __future__ import annotations

import pytest

from messagepusher.messages.lifecycle import (
    DELIVERY_FINAL,
    MESSAGE_FINAL,
    STAGE_RECIPIENT,
    STAGE_STATUS,
    DeliveryView,
    can_cancel,
    can_retry,
    final_status,
    first_stage,
    initial_status,
    stage_after,
)

NOW = 1_700_000_000.0


def from_db(text: str) -> str:
    """An equal string that is not the interned literal, as a status read from a row is."""
    return "".join(list(text))


def views(*statuses: str) -> list[DeliveryView]:
    return [DeliveryView(i, from_db(s)) for i, s in enumerate(statuses, start=1)]


@pytest.mark.parametrize(
    ("has_url", "has_ai", "stage"),
    [(True, True, "fetch"), (True, False, "fetch"), (False, True, "ai"), (False, False, "send")],
)
def test_a_message_starts_with_the_fetch_if_it_has_a_url_else_the_ai_step_else_the_send(
    has_url, has_ai, stage
):
    assert first_stage(has_url, has_ai) == stage


def test_after_the_fetch_comes_the_ai_step_when_one_was_asked_for():
    assert stage_after(from_db("fetch"), has_ai=True) == "ai"
    assert stage_after(from_db("fetch"), has_ai=False) == "send"


def test_after_any_stage_but_the_fetch_comes_the_send_whatever_the_message_asked_for():
    for stage in ("ai", "send"):
        assert stage_after(stage, has_ai=True) == "send"
        assert stage_after(stage, has_ai=False) == "send"


def test_every_stage_has_its_recipient_actor_and_its_message_status():
    assert STAGE_RECIPIENT == {"fetch": "fetcher", "ai": "ai_pool", "send": "channel_pool"}
    assert STAGE_STATUS == {"fetch": "fetching", "ai": "ai_processing", "send": "queued"}


def test_a_message_due_in_the_future_is_scheduled_whatever_its_first_stage():
    for stage in ("fetch", "ai", "send"):
        assert initial_status(NOW + 0.001, NOW, stage) == "scheduled"


@pytest.mark.parametrize("send_at", [None, NOW, NOW - 60])
def test_a_message_due_now_or_in_the_past_is_accepted_or_queued_at_once(send_at):
    assert initial_status(send_at, NOW, "fetch") == "accepted"
    assert initial_status(send_at, NOW, "ai") == "accepted"
    assert initial_status(send_at, NOW, "send") == "queued"
    assert initial_status(send_at, NOW, from_db("send")) == "queued"


def test_a_message_is_not_final_while_any_delivery_is_still_open():
    assert final_status(views("sent", "queued")) is None
    assert final_status(views("sending", "failed")) is None
    assert final_status(views("pending")) is None


def test_a_message_whose_deliveries_were_all_sent_is_delivered():
    assert final_status(views("sent")) == "delivered"
    assert final_status(views("sent", "sent", "sent")) == "delivered"


def test_some_sent_and_some_failed_for_good_is_partially_failed():
    assert final_status(views("sent", "failed")) == "partially_failed"
    assert final_status(views("dead", "sent", "sent")) == "partially_failed"


def test_nothing_sent_is_failed():
    assert final_status(views("failed")) == "failed"
    assert final_status(views("failed", "dead")) == "failed"


def test_a_message_with_no_delivery_at_all_is_failed():
    assert final_status([]) == "failed"


def test_a_message_whose_deliveries_were_all_cancelled_is_cancelled():
    assert final_status(views("cancelled", "cancelled")) == "cancelled"


def test_cancelled_deliveries_do_not_count_against_the_others():
    assert final_status(views("cancelled", "sent")) == "delivered"
    assert final_status(views("cancelled", "failed")) == "failed"
    assert final_status(views("cancelled", "sent", "dead")) == "partially_failed"


def test_a_failed_delivery_handed_to_a_fallback_counts_as_its_fallback_s_outcome():
    failed_primary = DeliveryView(1, from_db("failed"))
    sent_fallback = DeliveryView(2, from_db("sent"), fallback_of=1)
    assert final_status([failed_primary, sent_fallback]) == "delivered"
    dead_fallback = DeliveryView(2, "dead", fallback_of=1)
    assert final_status([failed_primary, dead_fallback]) == "failed"


def test_a_fallback_replaces_only_the_delivery_it_stands_in_for():
    rows = [
        DeliveryView(1, "failed"),
        DeliveryView(2, "failed"),
        DeliveryView(3, "sent", fallback_of=1),
    ]
    assert final_status(rows) == "partially_failed"


def test_an_open_fallback_keeps_the_message_open():
    assert final_status([DeliveryView(1, "failed"), DeliveryView(2, "queued", 1)]) is None


def test_final_status_accepts_any_iterable_of_deliveries_once():
    assert final_status(iter(views("sent", "failed"))) == "partially_failed"


def test_a_delivery_view_is_a_value():
    assert DeliveryView(1, "sent") == DeliveryView(1, "sent", None)
    assert len({DeliveryView(1, "sent"), DeliveryView(1, "sent")}) == 1


@pytest.mark.parametrize("status", ["accepted", "scheduled", "fetching", "queued", "sending"])
def test_a_message_that_is_not_final_can_be_cancelled(status):
    assert can_cancel(status)


@pytest.mark.parametrize("status", MESSAGE_FINAL)
def test_a_final_message_cannot_be_cancelled(status):
    assert not can_cancel(status)


def test_the_final_message_and_delivery_statuses_are_the_documented_ones():
    assert set(MESSAGE_FINAL) == {"delivered", "partially_failed", "failed", "cancelled"}
    assert set(DELIVERY_FINAL) == {"sent", "failed", "dead", "cancelled"}


def test_only_a_failed_or_dead_delivery_can_be_retried():
    statuses = ("failed", "dead", "sent", "cancelled", "queued", "sending")
    assert [can_retry(s) for s in statuses] == [True, True, False, False, False, False]
