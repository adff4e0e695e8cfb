"""The partition assignment: balanced within one, the same everywhere, and it moves little."""

import collections
import random
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker import assign_partitions

PARTITIONS = 32
member_ids = st.text(min_size=1, max_size=20)
fleets = st.sets(member_ids, min_size=1, max_size=5)


def loads(owners: tuple[str, ...]) -> collections.Counter[str]:
    return collections.Counter(owners)


@given(fleets, st.integers(min_value=1, max_value=200))
def test_every_member_gets_within_one_of_even(members: set[str], count: int) -> None:
    owners = assign_partitions(members, count)
    assert len(owners) == count
    counted = loads(owners)
    assert set(counted) <= members
    floor = count // len(members)
    per_member = [counted.get(member, 0) for member in members]
    assert min(per_member) >= floor
    assert max(per_member) <= floor + (1 if count % len(members) else 0)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
def test_32_partitions_over_one_to_five_daemons(size: int) -> None:
    members = [f"daemon-{index}" for index in range(size)]
    per_member = sorted(loads(assign_partitions(members, PARTITIONS)).values())
    assert len(per_member) == size
    assert per_member[-1] - per_member[0] <= 1


@given(fleets, st.randoms(use_true_random=False))
def test_the_order_members_are_listed_in_does_not_matter(
    members: set[str], shuffle: random.Random
) -> None:
    listed = sorted(members)
    shuffled = list(listed)
    shuffle.shuffle(shuffled)
    assert assign_partitions(listed, PARTITIONS) == assign_partitions(shuffled, PARTITIONS)


def moved(before: tuple[str, ...], after: tuple[str, ...]) -> int:
    return sum(1 for old, new in zip(before, after, strict=True) if old != new)


@settings(max_examples=300)
@given(st.sets(member_ids, min_size=2, max_size=6))
def test_a_join_or_leave_moves_little_beyond_what_must_move(members: set[str]) -> None:
    fleet = sorted(members)
    newcomer, others = fleet[0], fleet[1:]
    before, after = assign_partitions(others, PARTITIONS), assign_partitions(fleet, PARTITIONS)
    must = after.count(newcomer)  # what the newcomer takes must move; a leave is the reverse
    assert must <= moved(before, after) <= must + PARTITIONS // 4


@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_on_average_a_join_moves_at_most_two_more_than_it_must(size: int) -> None:
    rng = random.Random(size)
    extra = []
    for _ in range(200):
        fleet = [f"daemon-{rng.getrandbits(64):x}" for _ in range(size + 1)]
        before = assign_partitions(fleet[:-1], PARTITIONS)
        after = assign_partitions(fleet, PARTITIONS)
        extra.append(moved(before, after) - after.count(fleet[-1]))
    assert min(extra) >= 0
    assert statistics.mean(extra) <= 2.0


def test_the_salt_spreads_two_layouts_differently() -> None:
    members = ["a", "b", "c"]
    assert assign_partitions(members, PARTITIONS, salt="accounts") != assign_partitions(
        members, PARTITIONS, salt="invoices"
    )


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match=r"count must be an int >= 1 \(got 0\)"):
        assign_partitions(["a"], 0)
    with pytest.raises(ValueError, match=r"members must name at least one member"):
        assign_partitions([], 4)
