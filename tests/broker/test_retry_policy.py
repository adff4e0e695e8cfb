"""The pure parts of retrying: schedule, failure policy, fates, layout topology, attempt history."""

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker import (
    Envelope,
    FailurePolicy,
    FailureRouter,
    InvalidFailurePolicy,
    InvalidTopology,
    Park,
    Reject,
    Retry,
    RetryLayout,
    RetrySchedule,
    UndecodableMessage,
    WorkQueue,
    work_topology,
)
from broker._parking import HISTORY_LENGTH, attempt_history, record_failure
from broker._retry import EXHAUSTED, PERMANENT, UNDECODABLE, delay_label


def envelope(attempt: int = 0, **headers: str | int) -> Envelope:
    return Envelope(
        message_id="m1", type="Job", body=b"{}", timestamp=0.0, attempt=attempt, headers=headers
    )


class CarrierDownError(ConnectionError):
    pass


class NotFoundHereError(FileNotFoundError):
    pass


# -- schedule -------------------------------------------------------------------------------


def test_the_default_schedule_retries_five_times_on_five_tiers() -> None:
    schedule = RetrySchedule()
    assert schedule.max_attempts == 6
    assert schedule.tiers == (1.0, 5.0, 30.0, 120.0, 600.0)
    assert [schedule.delay(n) for n in range(1, 6)] == [1, 5, 30, 120, 600]


def test_the_last_delay_repeats_and_unused_delays_get_no_tier() -> None:
    assert RetrySchedule((1, 5), max_attempts=5).tiers == (1.0, 5.0)
    assert [RetrySchedule((1, 5), max_attempts=5).delay(n) for n in (1, 2, 3, 4)] == [1, 5, 5, 5]
    assert RetrySchedule((1, 5, 30), max_attempts=2).tiers == (1.0,)
    assert RetrySchedule((1,), max_attempts=1).tiers == ()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"delays": ()},
            r"retry delays must be one or more values of at least 0\.001 s \(got \(\)\)",
        ),
        ({"delays": (1, 0)}, r"at least 0\.001 s \(got \(1\.0, 0\.0\)\)"),
        ({"max_attempts": 0}, r"max_attempts must be >= 1 \(got 0\)"),
    ],
)
def test_an_impossible_schedule_is_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidFailurePolicy, match=message):
        RetrySchedule(**options)  # type: ignore[arg-type]


def test_delay_labels() -> None:
    labels = [delay_label(s) for s in (0.2, 0.5, 1, 1.5, 30, 120, 600, 3600, 5400)]
    assert labels == ["200ms", "500ms", "1s", "1500ms", "30s", "2m", "10m", "1h", "90m"]


# -- policy ---------------------------------------------------------------------------------


POLICY = FailurePolicy(
    RetrySchedule((1, 5), max_attempts=3),
    retryable=(ConnectionError, FileNotFoundError),
    permanent=(OSError, ValueError),
    rejected=(LookupError,),
)


def test_retryable_failures_retry_with_the_next_attempt_then_park_exhausted() -> None:
    assert POLICY.decide(CarrierDownError(), envelope(0)) == Retry(attempt=1, delay=1.0)
    assert POLICY.decide(CarrierDownError(), envelope(1)) == Retry(attempt=2, delay=5.0)
    assert POLICY.decide(CarrierDownError(), envelope(2)) == Park(EXHAUSTED)
    assert POLICY.decide(CarrierDownError(), envelope(7)) == Park(EXHAUSTED)
    assert [POLICY.is_last_attempt(envelope(n)) for n in range(4)] == [False, False, True, True]


def test_the_most_specific_listed_class_decides() -> None:
    assert POLICY.decide(PermissionError(), envelope()) == Park(PERMANENT)  # an OSError
    assert isinstance(
        POLICY.decide(NotFoundHereError(), envelope()), Retry
    )  # FileNotFoundError first
    assert POLICY.decide(KeyError("k"), envelope()) == Reject()
    assert POLICY.decide(UnicodeDecodeError("utf-8", b"", 0, 1, "x"), envelope()) == Park(PERMANENT)


def test_unlisted_failures_get_the_default_and_restart_the_actor() -> None:
    assert POLICY.decide(RuntimeError(), envelope()) == Retry(attempt=1, delay=1.0, restart=True)
    parking = FailurePolicy(default="park")
    assert parking.decide(RuntimeError(), envelope()) == Park(PERMANENT, restart=True)
    rejecting = FailurePolicy(default="reject", restart="never")
    assert rejecting.decide(RuntimeError(), envelope()) == Reject(restart=False)
    always = FailurePolicy(retryable=(ConnectionError,), restart="always")
    assert always.decide(CarrierDownError(), envelope()).restart


def test_an_undecodable_message_is_parked_and_restarts_nothing() -> None:
    always = FailurePolicy(retryable=(ValueError,), restart="always")
    fate = always.decide(UndecodableMessage("bad body"), envelope())
    assert fate == Park(UNDECODABLE, restart=False)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"retryable": (ValueError,), "permanent": (ValueError,)},
            r"exception 'ValueError' is listed for both 'retry' and 'park'",
        ),
        (
            {"default": "drop"},
            r"default must be one of \('retry', 'park', 'reject'\) \(got 'drop'\)",
        ),
        ({"restart": "maybe"}, r"restart must be one of .* \(got 'maybe'\)"),
    ],
)
def test_an_impossible_policy_is_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidFailurePolicy, match=message):
        FailurePolicy(**options)  # type: ignore[arg-type]


@given(
    delays=st.lists(st.integers(1, 10_000), min_size=1, max_size=6),
    max_attempts=st.integers(1, 10),
    attempt=st.integers(0, 12),
)
def test_a_retry_never_exceeds_max_attempts_and_uses_a_declared_tier(
    delays: list[int], max_attempts: int, attempt: int
) -> None:
    schedule = RetrySchedule(tuple(ms / 1000 for ms in delays), max_attempts=max_attempts)
    fate = FailurePolicy(schedule).decide(RuntimeError(), envelope(attempt))
    if attempt + 1 >= max_attempts:
        assert fate == Park(EXHAUSTED, restart=True)
    else:
        assert isinstance(fate, Retry)
        assert fate.attempt == attempt + 1 < max_attempts
        assert fate.delay in schedule.tiers
        assert fate.delay == schedule.delays[min(attempt, len(delays) - 1)]


# -- layout and topology --------------------------------------------------------------------


def test_one_ttl_queue_per_delay_dead_letters_to_the_work_exchange_keeping_its_key() -> None:
    layout = RetryLayout(("clients", "carriers"), RetrySchedule((1, 5, 5, 30)))
    topology = layout.topology()
    tiers = {q.name: q for q in topology.queues if ".retry." in q.name}
    assert sorted(tiers) == sorted(
        f"{x}.retry.{label}" for x in ("clients", "carriers") for label in ("1s", "5s", "30s")
    )
    for name, queue in tiers.items():
        exchange = name.split(".retry.")[0]
        assert (queue.dead_letter_exchange, queue.dead_letter_routing_key) == (exchange, None)
        assert (queue.durable, queue.quorum) == (True, False)
        assert "x-dead-letter-routing-key" not in queue.arguments()
    assert tiers["clients.retry.30s"].message_ttl_ms == 30_000
    exchanges = {x.name: x.type for x in topology.exchanges}
    assert exchanges["clients.retry.5s"] == "fanout"
    assert (exchanges["parking"], exchanges["alerts"]) == ("fanout", "topic")
    parking = next(q for q in topology.queues if q.name == "parking")
    assert (parking.durable, parking.quorum, parking.message_ttl_ms) == (True, False, None)
    assert layout.origins()["carriers.retry.30s"] == "carriers"
    assert layout.tier_for("clients", 5) == "clients.retry.5s"
    assert layout.tier_for("elsewhere", 5) is None
    assert layout.tier_for("clients", 7) is None


def test_work_queues_are_quorum_with_a_delivery_limit_into_the_parking_lot() -> None:
    layout = RetryLayout(("clients",))
    work = work_topology(
        "clients",
        [WorkQueue("refunds", ("clients.refund", "clients.refund.#")), WorkQueue("topups", "x.*")],
        parking=layout.parking,
    )
    refunds = work.queues[0]
    assert refunds.arguments() == {
        "x-queue-type": "quorum",
        "x-delivery-limit": 5,
        "x-dead-letter-exchange": "parking",
    }
    assert [(b.queue, b.routing_key) for b in work.bindings] == [
        ("refunds", "clients.refund"),
        ("refunds", "clients.refund.#"),
        ("topups", "x.*"),
    ]
    (work | layout.topology()).check_complete()
    with pytest.raises(InvalidTopology, match="'parking'"):
        work.check_complete()  # alone, its dead-letter exchange would be missing


@pytest.mark.parametrize(
    "layout",
    [
        {"work_exchanges": ()},
        {"work_exchanges": ("",)},
        {"work_exchanges": ("parking",)},
        {"work_exchanges": ("clients",), "alerts": "parking"},
    ],
)
def test_a_layout_with_clashing_or_missing_names_is_refused(layout: dict[str, object]) -> None:
    with pytest.raises(InvalidTopology):
        RetryLayout(**layout)  # type: ignore[arg-type]


def test_a_policy_and_layout_must_share_their_tiers() -> None:
    layout = RetryLayout(("clients",), RetrySchedule((1, 5)))
    with pytest.raises(InvalidFailurePolicy, match=r"retries after \(1\.0, 30\.0\) s"):
        FailureRouter(None, layout, FailurePolicy(RetrySchedule((1, 30))))  # type: ignore[arg-type]


# -- attempt history ------------------------------------------------------------------------


def test_the_attempt_history_grows_per_failure_and_stays_bounded() -> None:
    current = envelope(0, **{"x-first-death-reason": "expired", "tenant": "acme"})
    for n in range(HISTORY_LENGTH + 4):
        headers = record_failure(current, TimeoutError(f"t{n}"), queue="q", at=float(n))
        current = msgspec.structs.replace(current, attempt=n + 1, headers=headers)
    history = attempt_history(current)
    assert len(history) == HISTORY_LENGTH
    assert [r.attempt for r in history] == list(range(4, HISTORY_LENGTH + 4))
    assert (history[-1].error_type, history[-1].error_message) == ("TimeoutError", "t19")
    assert "x-first-death-reason" not in current.headers
    assert current.headers["tenant"] == "acme"
    assert len(str(current.headers["x-attempt-history"])) < 2000


def test_a_damaged_history_reads_as_empty() -> None:
    assert attempt_history(envelope(**{"x-attempt-history": "[{"})) == ()
    assert attempt_history(envelope(**{"x-attempt-history": 3})) == ()
