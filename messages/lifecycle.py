"""The message state machine (DESIGN §3): stages, statuses, and what comes next.

Pure functions; `messages/store.py` carries out what they decide.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

MESSAGE_FINAL = ("delivered", "partially_failed", "failed", "cancelled")
DELIVERY_FINAL = ("sent", "failed", "dead", "cancelled")
DELIVERY_FAILED = ("failed", "dead")

STAGE_RECIPIENT = {"fetch": "fetcher", "ai": "ai_pool", "send": "channel_pool"}
STAGE_STATUS = {"fetch": "fetching", "ai": "ai_processing", "send": "queued"}


def first_stage(has_url: bool, has_ai: bool) -> str:
    if has_url:
        return "fetch"
    if has_ai:
        return "ai"
    return "send"


def stage_after(stage: str, has_ai: bool) -> str:
    """fetch → (ai) → send."""
    if stage == "fetch" and has_ai:
        return "ai"
    return "send"


def initial_status(send_at: float | None, now: float, stage: str) -> str:
    if send_at is not None and send_at > now:
        return "scheduled"
    return "accepted" if stage != "send" else "queued"


@dataclass(frozen=True)
class DeliveryView:
    id: int
    status: str
    fallback_of: int | None = None


def final_status(deliveries: Iterable[DeliveryView]) -> str | None:
    """The message's final status once every delivery is final, else None.

    A failed delivery that was handed to a fallback counts as its fallback's outcome.
    """
    rows = list(deliveries)
    if not rows:
        return "failed"
    if any(d.status not in DELIVERY_FINAL for d in rows):
        return None
    replaced = {d.fallback_of for d in rows if d.fallback_of is not None}
    effective = [d.status for d in rows if d.id not in replaced]
    if all(s == "cancelled" for s in effective):
        return "cancelled"
    considered = [s for s in effective if s != "cancelled"]
    if all(s == "sent" for s in considered):
        return "delivered"
    if any(s == "sent" for s in considered):
        return "partially_failed"
    return "failed"


def can_cancel(status: str) -> bool:
    return status not in MESSAGE_FINAL


def can_retry(delivery_status: str) -> bool:
    return delivery_status in DELIVERY_FAILED


def retryable(deliveries: Iterable[DeliveryView]) -> list[int]:
    """Ids of the deliveries a hand retry sends again: failed or dead, and not already handed
    to a fallback (the fallback's outcome counts for those). In id order."""
    rows = list(deliveries)
    replaced = {d.fallback_of for d in rows if d.fallback_of is not None}
    return sorted(d.id for d in rows if can_retry(d.status) and d.id not in replaced)
