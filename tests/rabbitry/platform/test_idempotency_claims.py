"""The claims of Idempotency-Keys in the records, on SQLite and on the real PostgreSQL: one
request at a time holds a key (whatever daemon it runs on), its answer ends the claim in the same
transaction, a claim left unrenewed goes stale and is taken over, old ones are cleaned up.

PostgreSQL must be running (127.0.0.1:5432, database `test`): these tests fail, not skip,
without it."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from rabbitry.platform import PostgresRecords, Records, RecordsStore
from rabbitry.platform._records import StoredAnswer

URL = "postgresql://postgres@127.0.0.1:5432/test"
TIMEOUT = 30.0
TTL = 86400.0

Open = Callable[[], RecordsStore]


@pytest.fixture(params=["sqlite", "postgresql"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Open]:
    """Opens a store on one database, as another daemon would (each its own connections)."""
    opened: list[RecordsStore] = []
    schema = f"claims_test_{secrets.token_hex(6)}"

    def open_one() -> RecordsStore:
        if request.param == "postgresql":
            store: RecordsStore = PostgresRecords.open(URL, schema=schema)
        else:
            store = Records.open(tmp_path / "var" / "records.db")
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()
    if request.param == "postgresql":
        with psycopg.connect(URL, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def claim(store: RecordsStore, owner: str, at: float, key: str = "k") -> object:
    return store.claim("acc-1", key, owner, at=at, stale_before=at - TIMEOUT, since=at - TTL)


def answer(at: float, status: int = 202) -> StoredAnswer:
    return StoredAnswer(
        request_hash="h", status=status, body=b'{"id": 1}', content_type="json", created_at=at
    )


def forget_all(store: RecordsStore) -> int:
    """How many answers and claims the store holds, all forgotten (the cleanup counts them)."""
    return store.forget_answers(older_than=float("inf"))


def test_one_request_holds_a_key_and_its_answer_ends_the_claim(open_store: Open) -> None:
    one, two = open_store(), open_store()
    assert claim(one, "request-a", 1000.0) == "claimed"
    assert claim(two, "request-b", 1001.0) == "running"  # another daemon, while it runs
    assert claim(one, "request-c", 1001.0) == "running"  # the same daemon, another request
    assert claim(two, "request-b", 1000.0, key="other") == "claimed"  # keys are apart
    one.remember("acc-1", "k", answer(1002.0), since=1002.0 - TTL, claimed_by="request-a")
    assert claim(two, "request-b", 1003.0) == answer(1002.0)  # replayed, not run again
    assert claim(one, "request-d", 1004.0) == answer(1002.0)
    assert two.recall("acc-1", "k") == answer(1002.0)
    two.release_claim("acc-1", "other", "request-b")
    assert forget_all(one) == 1  # the answer: the claims were all ended


def test_a_released_claim_lets_the_next_request_run(open_store: Open) -> None:
    one, two = open_store(), open_store()
    assert claim(one, "request-a", 1000.0) == "claimed"
    two.release_claim("acc-1", "k", "request-b")  # not its claim: nothing changes
    assert claim(two, "request-b", 1001.0) == "running"
    one.release_claim("acc-1", "k", "request-a")  # a 5xx: no answer kept
    assert claim(two, "request-b", 1002.0) == "claimed"
    assert one.recall("acc-1", "k") is None


def test_an_unrenewed_claim_goes_stale_and_is_taken_over(open_store: Open) -> None:
    dead, alive = open_store(), open_store()
    assert claim(dead, "request-a", 1000.0) == "claimed"
    assert dead.renew_claim("acc-1", "k", "request-a", at=1020.0)  # still running at 1020
    assert claim(alive, "request-b", 1049.0) == "running"  # renewed 29 s ago: alive
    assert claim(alive, "request-b", 1051.0) == "claimed"  # 31 s: its daemon died
    assert not dead.renew_claim("acc-1", "k", "request-a", at=1052.0)  # it was taken over
    dead.release_claim("acc-1", "k", "request-a")  # and cannot end the new owner's claim
    assert claim(dead, "request-c", 1053.0) == "running"
    # The late answer of the taken-over request does not end the new owner's claim either.
    dead.remember("acc-1", "k", answer(1054.0), since=1054.0 - TTL, claimed_by="request-a")
    alive.remember("acc-1", "k", answer(1055.0, 201), since=1055.0 - TTL, claimed_by="request-b")
    assert alive.recall("acc-1", "k") == answer(1054.0)  # the first answer kept stays
    assert forget_all(alive) == 1  # the answer: no claim left


def test_the_cleanup_forgets_claims_a_crash_left(open_store: Open) -> None:
    store = open_store()
    assert claim(store, "request-a", 1000.0) == "claimed"
    assert claim(store, "request-b", 5000.0, key="later") == "claimed"
    assert store.forget_answers(older_than=2000.0) == 1
    assert claim(store, "request-c", 1001.0) == "claimed"  # gone: no longer blocks the key
    assert claim(store, "request-c", 5001.0, key="later") == "running"


def test_an_expired_answer_is_not_replayed_and_the_key_runs_again(open_store: Open) -> None:
    store = open_store()
    store.remember("acc-1", "k", answer(1000.0))
    assert claim(store, "request-a", 1000.0 + TTL + 1) == "claimed"
    later = answer(1000.0 + TTL + 2)
    store.remember("acc-1", "k", later, since=1000.0 + 2, claimed_by="request-a")
    assert claim(store, "request-b", 1000.0 + TTL + 3) == later


def test_concurrent_claims_from_many_daemons_give_the_key_to_one(open_store: Open) -> None:
    stores = [open_store() for _ in range(6)]
    for round_ in range(10):
        barrier = threading.Barrier(len(stores))

        def race(n: int, key: str = f"k-{round_}", barrier: threading.Barrier = barrier) -> object:
            barrier.wait(timeout=10)
            return claim(stores[n], f"request-{n}", 1000.0, key=key)

        with ThreadPoolExecutor(len(stores)) as pool:
            outcomes = list(pool.map(race, range(len(stores))))
        assert sorted(map(str, outcomes)) == ["claimed"] + ["running"] * (len(stores) - 1)


def test_a_request_completing_during_a_claim_is_replayed_never_run_twice(open_store: Open) -> None:
    """The answer and the end of its claim are one transaction, and a claim reads the answer
    again after taking the key: a repeat racing the completion sees "running" or the answer."""
    first, repeat = open_store(), open_store()
    seen: list[object] = []
    for n in range(100):
        key = f"k-{n}"
        assert claim(first, "request-a", 1000.0, key=key) == "claimed"
        barrier = threading.Barrier(2)

        def complete(key: str = key, barrier: threading.Barrier = barrier) -> None:
            barrier.wait(timeout=10)
            first.remember("acc-1", key, answer(1001.0), since=1001.0 - TTL, claimed_by="request-a")

        def again(key: str = key, barrier: threading.Barrier = barrier) -> None:
            barrier.wait(timeout=10)
            while (outcome := claim(repeat, "request-b", 1001.0, key=key)) == "running":
                seen.append(outcome)
            assert outcome == answer(1001.0), outcome

        with ThreadPoolExecutor(2) as pool:
            for done in [pool.submit(complete), pool.submit(again)]:
                done.result()
