"""Topology as data: validation messages, RabbitMQ arguments, topic matching against a reference."""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker import (
    Binding,
    Exchange,
    InvalidTopology,
    Queue,
    Topology,
    split_words,
    topic_matches,
)


def test_queue_arguments_map_to_rabbitmq_x_arguments() -> None:
    queue = Queue(
        "sms.submit",
        quorum=True,
        delivery_limit=5,
        message_ttl_ms=60_000,
        dead_letter_exchange="parked",
        dead_letter_routing_key="sms.submit.parked",
        single_active_consumer=True,
        max_length=1000,
        overflow="reject-publish",
    )
    assert queue.arguments() == {
        "x-queue-type": "quorum",
        "x-delivery-limit": 5,
        "x-message-ttl": 60_000,
        "x-dead-letter-exchange": "parked",
        "x-dead-letter-routing-key": "sms.submit.parked",
        "x-single-active-consumer": True,
        "x-max-length": 1000,
        "x-overflow": "reject-publish",
    }
    assert Queue("plain").arguments() == {}
    assert Exchange("sms", alternate_exchange="unrouted").arguments() == {
        "alternate-exchange": "unrouted"
    }
    assert Exchange("sms").arguments() == {}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Queue(""), "queue names must be 1 to 255 bytes long (got '')"),
        (lambda: Queue("x" * 256), "queue names must be 1 to 255 bytes long"),
        (lambda: Exchange("amq.topic"), "starting with 'amq.' are reserved by RabbitMQ"),
        (lambda: Exchange("sms", type="headers"), "exchange 'sms' has type 'headers'; use one of"),
        (
            lambda: Queue("q", delivery_limit=3),
            "queue 'q' sets delivery_limit=3 but only quorum queues enforce one; set quorum=True",
        ),
        (lambda: Queue("q", message_ttl_ms=-1), "queue 'q'.message_ttl_ms must be >= 0 (got -1)"),
        (lambda: Queue("q", quorum=True, durable=False), "must be durable"),
        (lambda: Queue("q", quorum=True, exclusive=True), "neither exclusive nor auto-delete"),
        (
            lambda: Queue("q", dead_letter_routing_key="k"),
            "sets dead_letter_routing_key='k' without a dead_letter_exchange",
        ),
        (lambda: Queue("q", overflow="drop-tail"), "has overflow='drop-tail'; use one of"),
        (
            lambda: Queue("q", quorum=True, overflow="reject-publish-dlx"),
            "does not support overflow='reject-publish-dlx'",
        ),
        (lambda: Queue("q", dead_letter_exchange="amq.direct"), "dead-letter exchange names"),
    ],
)
def test_invalid_declarations_say_what_and_how_to_fix(make: object, message: str) -> None:
    with pytest.raises(InvalidTopology, match=re.escape(message)):
        make()  # type: ignore[operator]


def test_a_binding_to_an_undeclared_queue_or_exchange_is_refused() -> None:
    with pytest.raises(InvalidTopology) as caught:
        Topology(exchanges=[Exchange("sms")], bindings=[Binding("sms.submit", "sms", "sms.#")])
    assert str(caught.value) == (
        "binding 'sms.#' from exchange 'sms' names undeclared queue 'sms.submit'; "
        "add Queue('sms.submit') to the topology"
    )
    with pytest.raises(InvalidTopology, match=r"names an undeclared exchange; add Exchange\('s'\)"):
        Topology(queues=[Queue("q")], bindings=[Binding("q", "s", "#")])
    assert isinstance(caught.value, ValueError)


def test_parts_merge_and_equal_duplicates_collapse() -> None:
    sms = Exchange("sms")
    work = Topology(exchanges=[sms], queues=[Queue("a")], bindings=[Binding("a", "sms", "a.#")])
    more = Topology(exchanges=[sms], queues=[Queue("b")], bindings=[Binding("b", "sms", "b.#")])
    merged = work | more | work
    assert merged.exchanges == (sms,)
    assert [q.name for q in merged.queues] == ["a", "b"]
    assert len(merged.bindings) == 2
    with pytest.raises(InvalidTopology, match="queue 'a' is declared twice with different"):
        _ = work | Topology(queues=[Queue("a", durable=False)])


def test_dangling_dead_letter_and_alternate_exchanges_are_found() -> None:
    part = Topology(
        exchanges=[Exchange("sms", alternate_exchange="unrouted")],
        queues=[Queue("q", dead_letter_exchange="parked"), Queue("r", dead_letter_exchange="")],
    )
    assert part.dangling_exchanges() == {"unrouted": "exchange 'sms'", "parked": "queue 'q'"}
    with pytest.raises(InvalidTopology, match="routes to undeclared exchange 'parked'"):
        (part | Topology(exchanges=[Exchange("unrouted")])).check_complete()
    (part | Topology(exchanges=[Exchange("unrouted"), Exchange("parked")])).check_complete()


def test_words_split_as_rabbitmq_splits_them() -> None:
    assert split_words("") == ()
    assert split_words("a") == ("a",)
    assert split_words("a..b.") == ("a", "", "b", "")


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("#", "", True),
        ("*", "", False),
        ("", "", True),
        ("sms.#", "sms", True),
        ("sms.#.eu", "sms.eu", True),
        ("sms.#.eu", "sms.a.b.eu", True),
        ("sms.*.eu", "sms.eu", False),
        ("#.#", "a", True),
        ("*.*", "a", False),
        ("a.*.#", "a", False),
        ("a.*.#", "a.b", True),
        ("a", "a.b", False),
    ],
)
def test_topic_examples(pattern: str, key: str, expected: bool) -> None:
    assert topic_matches(pattern, key) is expected


def reference_matches(pattern: str, key: str) -> bool:
    """Topic matching as a regex over words each followed by a NUL (an independent model)."""
    word = "[^\x00]*\x00"
    parts = {"*": word, "#": f"(?:{word})*"}
    regex = "".join(parts.get(w, re.escape(w) + "\x00") for w in split_words(pattern))
    return re.fullmatch(regex, "".join(w + "\x00" for w in split_words(key))) is not None


words = st.sampled_from(["a", "b", "sms", ""])
keys = st.lists(words, max_size=6).map(".".join)
patterns = st.lists(words | st.sampled_from(["*", "#"]), max_size=6).map(".".join)


@given(patterns, keys)
def test_topic_matching_agrees_with_the_reference(pattern: str, key: str) -> None:
    assert topic_matches(pattern, key) == reference_matches(pattern, key)


@given(keys)
def test_a_key_matches_itself_and_hash(key: str) -> None:
    assert topic_matches(key, key)
    assert topic_matches("#", key)


def test_at_least_once_dead_lettering_needs_a_quorum_queue_that_rejects_publishes() -> None:
    tier = Queue(
        "clients.retry.5s",
        quorum=True,
        message_ttl_ms=5000,
        dead_letter_exchange="clients",
        dead_letter_strategy="at-least-once",
        overflow="reject-publish",
    )
    assert tier.arguments()["x-dead-letter-strategy"] == "at-least-once"
    with pytest.raises(InvalidTopology, match=r"set overflow='reject-publish'$"):
        Queue("q", quorum=True, dead_letter_exchange="d", dead_letter_strategy="at-least-once")
    with pytest.raises(InvalidTopology, match=r"only a quorum queue with a dead_letter_exchange"):
        Queue("q", dead_letter_exchange="d", dead_letter_strategy="at-most-once")
    with pytest.raises(InvalidTopology, match=r"dead_letter_strategy='twice'; use"):
        Queue("q", quorum=True, dead_letter_exchange="d", dead_letter_strategy="twice")  # type: ignore[arg-type]


def test_a_quorum_retry_layout_replicates_what_waits_for_a_retry_or_an_operator() -> None:
    from broker import RetryLayout, RetrySchedule
    from broker._retry import PARKING_DELIVERY_LIMIT

    topology = RetryLayout(("clients",), RetrySchedule((1, 30)), quorum=True).topology()
    queues = {queue.name: queue for queue in topology.queues}
    assert all(queue.quorum for queue in queues.values())
    tier = queues["clients.retry.30s"]
    assert (tier.message_ttl_ms, tier.dead_letter_exchange) == (30_000, "clients")
    assert (tier.dead_letter_strategy, tier.overflow) == ("at-least-once", "reject-publish")
    assert queues["parking"].delivery_limit == PARKING_DELIVERY_LIMIT
    assert not queues["parking"].single_active_consumer
