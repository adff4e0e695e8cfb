"""Partition layouts: validation, the stable hash, the topology, routing on the memory broker."""

import collections
import json
import os
import subprocess
import sys
import uuid

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from broker import (
    Envelope,
    InvalidTopology,
    PartitionLayout,
    jump_hash,
    open_transport,
    stable_key_hash,
)

keys = st.text(max_size=40)


def layout(count: int = 8, **options: object) -> PartitionLayout:
    return PartitionLayout("accounts", count=count, exchange="accounts", **options)  # type: ignore[arg-type]


# -- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, -1, True, 2.0, "4"])
def test_count_must_be_a_positive_int(count: object) -> None:
    with pytest.raises(InvalidTopology, match=r"count must be an int >= 1 \(got "):
        layout(count)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"name": ""}, r"partition layout names must be non-empty str \(got ''\)"),
        ({"name": "a.*"}, r"name 'a\.\*' holds a topic wildcard"),
        ({"name": "a#"}, r"name 'a#' holds a topic wildcard"),
        ({"name": "amq.accounts"}, r"reserved by RabbitMQ \(got 'amq\.accounts\.0'\)"),
        ({"name": "x" * 254}, r"queue names must be 1 to 255 bytes long"),
        ({"exchange": ""}, r"exchange names must be 1 to 255 bytes long"),
        (
            {"exchange_type": "fanout"},
            r"exchange_type must be 'direct' or 'topic' \(got 'fanout'\)",
        ),
        (
            {"delivery_limit": 3, "quorum": False},
            r"only quorum queues enforce one; set quorum=True",
        ),
    ],
)
def test_invalid_layouts_say_what_to_fix(options: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"name": "accounts", "count": 4, "exchange": "accounts"}
    arguments.update(options)
    with pytest.raises(InvalidTopology, match=message):
        PartitionLayout(**arguments)  # type: ignore[arg-type]


def test_invalid_layout_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="count"):
        layout(0)


def test_keys_must_be_str() -> None:
    with pytest.raises(TypeError, match=r"partition keys must be str \(got 42 of type int\)"):
        layout().partition(42)  # type: ignore[arg-type]


def test_queue_index_out_of_range() -> None:
    with pytest.raises(IndexError, match=r"has partitions 0 to 7 \(got 8\)"):
        layout().queue(8)


def test_jump_hash_needs_a_bucket() -> None:
    with pytest.raises(ValueError, match=r"buckets >= 1 \(got 0\)"):
        jump_hash(1, 0)


# -- topology ----------------------------------------------------------------------------------


def test_topology_has_one_single_active_consumer_queue_per_partition() -> None:
    topology = layout(3).topology()
    assert [exchange.name for exchange in topology.exchanges] == ["accounts"]
    assert topology.exchanges[0].type == "direct"
    assert [queue.name for queue in topology.queues] == ["accounts.0", "accounts.1", "accounts.2"]
    for queue in topology.queues:
        assert queue.durable
        assert queue.arguments() == {"x-queue-type": "quorum", "x-single-active-consumer": True}
    assert [(b.queue, b.exchange, b.routing_key) for b in topology.bindings] == [
        (f"accounts.{i}", "accounts", f"accounts.{i}") for i in range(3)
    ]


def test_classic_partitions_on_request() -> None:
    queue = layout(2, quorum=False).topology().queues[0]
    assert queue.arguments() == {"x-single-active-consumer": True}


def test_quorum_partitions_pass_their_arguments_on() -> None:
    topology = layout(2, delivery_limit=5, dead_letter_exchange="parked").topology()
    assert topology.queues[0].arguments() == {
        "x-queue-type": "quorum",
        "x-delivery-limit": 5,
        "x-dead-letter-exchange": "parked",
        "x-single-active-consumer": True,
    }


def test_layout_is_frozen_and_comparable() -> None:
    assert layout() == layout()
    assert hash(layout()) == hash(layout())
    with pytest.raises(AttributeError):
        layout().count = 3  # type: ignore[misc]


# -- the stable hash ---------------------------------------------------------------------------

# Fixed vectors: if any of these changes, every deployed key moves to another partition.
VECTORS = [
    ("", 0xE4A6A0577479B2B4, 5),
    ("account-42", 0xEBDA53EB0ECC04FA, 15),
    ("account-43", 0x1BBA088AA377C893, 12),
    ("Zürich", 0x707438FAA779D508, 6),
    ("🙂", 0xB9100A4572A297B7, 11),
    ("a" * 100, 0xCDD655DC3D3E202F, 14),
]


@pytest.mark.parametrize(("key", "digest", "partition"), VECTORS)
def test_fixed_vectors(key: str, digest: int, partition: int) -> None:
    assert stable_key_hash(key) == digest
    assert layout(16).partition(key) == partition
    assert layout(16).routing_key(key) == f"accounts.{partition}"


def test_jump_hash_fixed_vectors() -> None:
    assert [jump_hash(key, 10) for key in (0, 1, 2**64 - 1, 12345678901234567)] == [0, 6, 9, 5]


def test_partitions_are_the_same_in_another_process() -> None:
    sample = [f"account-{i}" for i in range(200)] + ["", "Zürich", "🙂"]
    here = [layout(13).partition(key) for key in sample]
    script = (
        "import json, sys\n"
        "from broker import PartitionLayout\n"
        "layout = PartitionLayout('accounts', count=13, exchange='accounts')\n"
        "print(json.dumps([layout.partition(key) for key in json.loads(sys.stdin.read())]))\n"
    )
    for seed in ("1", "2"):  # another hash() salt each time: the partitions must not care
        there = subprocess.run(
            [sys.executable, "-c", script],
            input=json.dumps(sample),
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
            timeout=60,
        ).stdout
        assert json.loads(there) == here


@settings(deadline=None)  # building a layout validates up to 200 queue declarations
@given(key=keys, count=st.integers(1, 200))
def test_same_key_same_partition_in_range(key: str, count: int) -> None:
    accounts = layout(count)
    partition = accounts.partition(key)
    assert 0 <= partition < count
    assert layout(count).partition(key) == partition
    assert accounts.routing_key(key) == accounts.queues[partition]


@given(key=keys, count=st.integers(1, 10_000))
def test_growing_by_one_moves_a_key_only_to_the_new_partition(key: str, count: int) -> None:
    before = jump_hash(stable_key_hash(key), count)
    after = jump_hash(stable_key_hash(key), count + 1)
    assert after in (before, count)


@settings(max_examples=20, deadline=None)
@given(count=st.integers(2, 16), salt=st.text(max_size=8))
def test_keys_spread_roughly_evenly(count: int, salt: str) -> None:
    total = 400 * count
    hits = collections.Counter(layout(count).partition(f"{salt}:{i}") for i in range(total))
    assert set(hits) == set(range(count))
    # 400 expected per partition: a chi-square far beyond the 1e-6 tail means a biased hash.
    chi_square = sum((hits[p] - 400) ** 2 / 400 for p in range(count))
    assert chi_square < count + 12 * count**0.5 + 30


# -- routing (memory broker) -------------------------------------------------------------------


async def test_each_key_lands_in_its_partition_queue() -> None:
    accounts = PartitionLayout(f"accounts-{uuid.uuid4().hex}", count=4, exchange="accounts")
    async with open_transport(f"memory://{uuid.uuid4().hex}") as transport:
        await transport.declare(accounts.topology())
        expected = collections.Counter[str]()
        for i in range(40):
            key = f"account-{i}"
            envelope = Envelope(message_id=str(i), type="t", body=b"", timestamp=0.0)
            await transport.publish(
                envelope, exchange=accounts.exchange, routing_key=accounts.routing_key(key)
            )
            expected[accounts.queues[accounts.partition(key)]] += 1
        with trio.fail_after(5):
            for queue in accounts.queues:
                assert (await transport.queue_statistics(queue)).messages == expected[queue]
        assert sum(expected.values()) == 40
        assert len(expected) == 4
