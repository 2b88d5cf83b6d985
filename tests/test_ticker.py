"""The process ticker: timed tells on an injected clock, driven synchronously, and one real
actor showing that a timed message is handled in the actor's own thread."""

from __future__ import annotations

import threading

import pykka
import pytest

from messagepusher.supervisor.clock import FakeClock, SystemClock
from messagepusher.supervisor.ticker import ActorTimers, Ticker


class Ref:
    """Stands in for an ActorRef: records what it is told; `dead` makes tell raise like pykka."""

    def __init__(self) -> None:
        self.told: list[str] = []
        self.dead = False

    def tell(self, message: str) -> None:
        if self.dead:
            raise pykka.ActorDeadError("stopped")
        self.told.append(message)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ticker(clock) -> Ticker:
    return Ticker(clock, threaded=False)


def test_a_one_shot_timer_is_told_once_when_due_and_not_before(clock, ticker):
    ref = Ref()
    ticker.after(ref, 5, "scan")
    clock.advance(4.9)
    assert ticker.run_due() == 0 and ref.told == []
    clock.advance(0.1)
    assert ticker.run_due() == 1 and ref.told == ["scan"]
    clock.advance(60)
    assert ticker.run_due() == 0 and ref.told == ["scan"]


def test_a_periodic_timer_is_told_every_period_and_missed_periods_are_not_caught_up(clock, ticker):
    ref = Ref()
    ticker.every(ref, 10, "tick")
    for _ in range(3):
        clock.advance(10)
        ticker.run_due()
    assert ref.told == ["tick"] * 3
    clock.advance(55)  # five periods pass while the process is busy
    ticker.run_due()
    assert ref.told == ["tick"] * 4
    clock.advance(9.9)
    ticker.run_due()
    assert ref.told == ["tick"] * 4
    clock.advance(0.1)
    ticker.run_due()
    assert ref.told == ["tick"] * 5


def test_a_periodic_timer_may_fire_first_at_once(clock, ticker):
    ref = Ref()
    ticker.every(ref, 10, "tick", first=0)
    assert ticker.run_due() == 1


def test_a_cancelled_timer_is_never_told(clock, ticker):
    ref = Ref()
    ticker.after(ref, 1, "once").cancel()
    ticker.every(ref, 1, "often").cancel()
    clock.advance(5)
    assert ticker.run_due() == 0 and ref.told == []


def test_a_timer_of_a_stopped_actor_is_dropped(clock, ticker):
    ref, other = Ref(), Ref()
    ticker.every(ref, 1, "tick")
    ticker.every(other, 1, "tick")
    ref.dead = True
    clock.advance(1)
    assert ticker.run_due() == 1
    ref.dead = False
    clock.advance(1)
    ticker.run_due()
    assert ref.told == [] and other.told == ["tick", "tick"]


def test_timers_are_told_in_the_order_they_fall_due(clock, ticker):
    ref = Ref()
    ticker.after(ref, 3, "third")
    ticker.after(ref, 1, "first")
    ticker.after(ref, 2, "second")
    clock.advance(3)
    ticker.run_due()
    assert ref.told == ["first", "second", "third"]


def test_naming_an_actors_timer_again_replaces_it_and_cancel_all_drops_every_one(clock, ticker):
    ref = Ref()
    timers = ActorTimers(ticker, ref)
    timers.after("scan", 5, "late scan")
    timers.after("scan", 1, "early scan")
    timers.every("lease", 2, "tick")
    clock.advance(2)
    ticker.run_due()
    assert ref.told == ["early scan", "tick"]
    timers.cancel_all()
    clock.advance(10)
    assert ticker.run_due() == 0


def test_a_stopped_ticker_tells_nothing_and_takes_no_new_timers(clock, ticker):
    ref = Ref()
    ticker.every(ref, 1, "tick")
    ticker.stop()
    assert ticker.after(ref, 0, "late").cancelled
    clock.advance(5)
    assert ticker.run_due() == 0 and ref.told == []


def test_a_period_that_is_not_positive_is_refused(ticker):
    with pytest.raises(ValueError, match="positive"):
        ticker.every(Ref(), 0, "tick")


class Recorder(pykka.ThreadingActor):
    use_daemon_thread = True

    def __init__(self, seen: list[str], done: threading.Event):
        super().__init__()
        self.seen = seen
        self.done = done

    def on_start(self) -> None:
        self.seen.append(threading.current_thread().name)

    def on_receive(self, message):
        self.seen.append(threading.current_thread().name)
        self.done.set()


def test_a_timed_message_is_handled_in_the_actors_own_thread_not_the_tickers():
    seen: list[str] = []
    done = threading.Event()
    ticker = Ticker(SystemClock())
    ref = Recorder.start(seen, done)
    try:
        ticker.after(ref, 0.05, "tick")
        assert done.wait(30), "the timed message never arrived"
    finally:
        ticker.stop()
        ref.stop()
    actor_thread, handled_in = seen
    assert handled_in == actor_thread and handled_in != "ticker"
