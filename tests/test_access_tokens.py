"""The shared access-token cache: reuse until shortly before expiry, one refresh for a refused
token, and one fetch between processes that need a token at the same moment (SQLite and PostgreSQL)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from messagepusher.accounts import access_tokens
from messagepusher.accounts.access_tokens import credential_key, shared_token, usable_until


class Clock:
    def __init__(self, at: float = 1_000_000.0):
        self.at = at

    def __call__(self) -> float:
        return self.at


def counting_fetch(tokens: list[str], expires_in: float = 7200):
    calls: list[str] = []

    def fetch() -> tuple[str, float]:
        calls.append(tokens[len(calls)])
        return calls[-1], expires_in

    return fetch, calls


def test_a_token_is_used_until_five_minutes_before_it_expires(db) -> None:
    clock = Clock()
    fetch, calls = counting_fetch(["first", "second"])
    key = credential_key("wechat_test", "app", "secret")
    assert shared_token(key, fetch, now=clock) == "first"
    clock.at += 7200 - 301
    assert shared_token(key, fetch, now=clock) == "first"
    clock.at += 2
    assert shared_token(key, fetch, now=clock) == "second"
    assert calls == ["first", "second"]


def test_a_short_lived_token_is_refreshed_at_ninety_percent_of_its_life() -> None:
    assert usable_until(100.0, 600) == 640.0
    assert usable_until(100.0, 7200) == 7000.0


def test_a_refused_token_is_fetched_again_once_and_its_replacement_shared(db) -> None:
    fetch, calls = counting_fetch(["old", "new"])
    key = credential_key("wecom_app", "corp", "secret")
    assert shared_token(key, fetch) == "old"
    assert shared_token(key, fetch, stale="old") == "new"
    # A second sender that saw "old" refused too gets "new" without a fetch of its own.
    assert shared_token(key, fetch, stale="old") == "new"
    assert calls == ["old", "new"]


def test_a_failed_fetch_propagates_and_frees_the_row_for_the_next_caller(db) -> None:
    def refused() -> tuple[str, float]:
        raise RuntimeError("token endpoint said no")

    key = credential_key("feishu_app", "app", "secret")
    with pytest.raises(RuntimeError, match="said no"):
        shared_token(key, refused)
    fetch, calls = counting_fetch(["after"])
    assert shared_token(key, fetch) == "after" and calls == ["after"]


def hold_lease(key: str, until: float) -> None:
    access_tokens.execute(access_tokens.ENSURE_ROW, (key, 0.0))
    access_tokens.execute("UPDATE access_token SET lease_until = ? WHERE key = ?", (until, key))


def test_the_lease_of_a_refresher_that_died_is_taken_over_when_it_ends(db) -> None:
    clock = Clock()
    key = credential_key("wechat_test", "died")
    hold_lease(key, clock() + 10)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.at += 1

    fetch, calls = counting_fetch(["taken over"])
    assert shared_token(key, fetch, now=clock, sleep=sleep) == "taken over"
    assert len(slept) == 10 and calls == ["taken over"]


def test_of_two_senders_that_read_a_free_row_only_one_takes_the_lease(db) -> None:
    key = credential_key("wechat_test", "both")
    access_tokens.execute(access_tokens.ENSURE_ROW, (key, 0.0))
    seen = [access_tokens.select_rows(access_tokens.READ_ROW, (key,))[0] for _ in range(2)]
    taken = [
        access_tokens.execute(access_tokens.TAKE_LEASE, (100.0 + i, key, lease, token))
        for i, (token, _expires, lease) in enumerate(seen)
    ]
    assert taken == [1, 0]


def test_a_waiter_gives_up_when_a_lease_outlasts_its_wait(db) -> None:
    clock = Clock()
    key = credential_key("wechat_test", "stuck")
    hold_lease(key, clock() + 100)  # e.g. another node's clock runs ahead

    def sleep(seconds: float) -> None:
        clock.at += 5

    with pytest.raises(access_tokens.TokenWaitTimeout, match="did not finish within 30 s"):
        shared_token(key, counting_fetch(["never"])[0], now=clock, sleep=sleep)


def test_different_credentials_have_different_rows_and_no_secret_in_the_key() -> None:
    one = credential_key("wechat_test", "https://api.weixin.qq.com", "app", "secret-1")
    two = credential_key("wechat_test", "https://api.weixin.qq.com", "app", "secret-2")
    assert one != two and "secret" not in one and len(one) == 64


RACER = textwrap.dedent(
    """
    import sys, time
    from messagepusher.supervisor.db import open_database
    from messagepusher.accounts.access_tokens import shared_token

    url, log, start_at = sys.argv[1], sys.argv[2], float(sys.argv[3])
    open_database(url).connect()

    def fetch():
        with open(log, "a") as f:
            f.write("fetch\\n")
        time.sleep(1.0)  # both processes are inside shared_token while this one fetches
        return "token-from-one-fetch", 7200

    time.sleep(max(0.0, start_at - time.time()))
    print(shared_token("race-key", fetch))
    """
)


def race(url: str, tmp_path) -> tuple[list[str], list[str]]:
    import time

    log = tmp_path / "fetches.log"
    start_at = time.time() + 3.0  # both children are importing and connected by then
    children = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, url, str(log), str(start_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = []
    for child in children:
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        outputs.append(out.strip())
    return outputs, log.read_text().splitlines()


def test_two_processes_on_one_sqlite_file_fetch_the_token_once(db, tmp_path) -> None:
    outputs, fetches = race(f"sqlite:///{tmp_path / 'unit.db'}", tmp_path)
    assert outputs == ["token-from-one-fetch"] * 2
    assert fetches == ["fetch"]


def test_two_processes_on_postgresql_fetch_the_token_once(postgres_url, tmp_path) -> None:
    from messagepusher.supervisor.db import open_database
    from messagepusher.supervisor.migrations import migrate

    url, _schema = postgres_url
    database = open_database(url)
    database.connect()
    migrate(database)
    database.close()
    outputs, fetches = race(url, tmp_path)
    assert outputs == ["token-from-one-fetch"] * 2
    assert fetches == ["fetch"]
