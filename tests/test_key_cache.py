"""The HTTP key cache against the shared credentials stamp, without a server: a hand-moved stamp
and clock. That a revocation through one server reaches another is in test_cluster_state.py.
"""

from __future__ import annotations

from messagepusher.http.auth import KeyCache, Principal
from messagepusher.supervisor.clock import FakeClock

ALICE = Principal(1, "alice", "user", frozenset({"messages:send"}), key_id=7)


class Stamp:
    def __init__(self) -> None:
        self.value = 0

    def __call__(self) -> int:
        return self.value


def test_a_cached_key_is_served_until_the_shared_stamp_moves():
    stamp = Stamp()
    cache = KeyCache(ttl=3600, clock=FakeClock(), generation=stamp)
    principal, seen = cache.get("mp_k")
    assert principal is None
    cache.put("mp_k", ALICE, None, seen)
    assert cache.get("mp_k") == (ALICE, 0)
    stamp.value = 1  # another process changed a key or a user
    assert cache.get("mp_k") == (None, 1)


def test_a_key_loaded_before_the_stamp_moved_is_not_kept():
    stamp = Stamp()
    cache = KeyCache(ttl=3600, clock=FakeClock(), generation=stamp)
    _none, seen = cache.get("mp_k")
    stamp.value = 1
    assert cache.get("mp_other") == (None, 1)  # another thread saw the new stamp
    cache.put("mp_k", ALICE, None, seen)  # loaded under the old one: may be stale
    assert cache.get("mp_k") == (None, 1)


def test_the_ttl_still_bounds_an_entry_and_zero_disables_the_cache_and_its_reads():
    stamp, clock = Stamp(), FakeClock()
    cache = KeyCache(ttl=5, clock=clock, generation=stamp)
    _none, seen = cache.get("mp_k")
    cache.put("mp_k", ALICE, None, seen)
    clock.advance(5.5)
    assert cache.get("mp_k") == (None, 0)

    def unreachable() -> int:
        raise AssertionError("a disabled cache reads no stamp")

    off = KeyCache(ttl=0, generation=unreachable)
    assert off.get("mp_k") == (None, 0)
    off.put("mp_k", ALICE, None, 0)
    assert off.get("mp_k") == (None, 0)
