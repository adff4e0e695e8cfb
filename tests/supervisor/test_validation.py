"""The whole tree is checked before anything starts; each problem is one sentence with its path."""

import math

import attrs
import pytest

from supervisor import (
    Backoff,
    ChildSpec,
    InvalidChildSpec,
    Restart,
    Strategy,
    SupervisorError,
    SupervisorSpec,
    open_supervisor,
    pool,
    supervisor,
    validate,
)

from .conftest import Lab


def nested(lab: Lab, **sim: object) -> SupervisorSpec:
    child = lab.child("sim")

    carriers = supervisor("carriers", Strategy.ONE_FOR_ONE, [attrs.evolve(child, **sim)])
    return SupervisorSpec(name="root", children=(lab.child("ledger"), carriers))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"backoff": Backoff(min=1.0, max=0.5)},
            "child 'root/carriers/sim': backoff.max must be >= backoff.min (got 0.5 < 1.0)",
        ),
        (
            {"backoff": Backoff(min=-1.0, max=1.0)},
            "child 'root/carriers/sim': backoff.min must be >= 0 (got -1.0)",
        ),
        (
            {"backoff": Backoff.exponential(jitter=1.5)},
            "child 'root/carriers/sim': backoff.jitter must be between 0 and 1 (got 1.5)",
        ),
        (
            {"backoff": Backoff.exponential(multiplier=0.5)},
            "child 'root/carriers/sim': backoff.multiplier must be >= 1 (got 0.5)",
        ),
        (
            {"backoff": Backoff.exponential(reset_after=0)},
            "child 'root/carriers/sim': backoff.reset_after must be > 0 (got 0)",
        ),
        (
            {"backoff": Backoff(min=math.nan, max=1.0)},
            "child 'root/carriers/sim': backoff.min must be finite (got nan)",
        ),
        (
            {"shutdown": -1},
            "child 'root/carriers/sim': shutdown must be a number of seconds >= 0 (got -1)",
        ),
        (
            {"restart": "sometimes"},
            (
                "child 'root/carriers/sim': restart must be one of permanent, transient, temporary "
                "(got 'sometimes')"
            ),
        ),
        ({"name": ""}, "child under 'root/carriers': name must not be empty (got '')"),
        (
            {"name": "a/b"},
            (
                "child under 'root/carriers': name must not contain '/' or surrounding spaces "
                "(got 'a/b')"
            ),
        ),
        (
            {"start": None},
            (
                "child 'root/carriers/sim': start must be an async callable taking task_status "
                "(got None)"
            ),
        ),
    ],
)
def test_a_bad_child_is_named_by_path_and_field(
    lab: Lab, change: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidChildSpec) as caught:
        validate(nested(lab, **change))
    assert str(caught.value) == message
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, SupervisorError)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"intensity": -1}, "supervisor 'root': intensity must be >= 0 (got -1)"),
        ({"intensity": 1.5}, "supervisor 'root': intensity must be an integer (got 1.5)"),
        ({"period": 0}, "supervisor 'root': period must be a finite number > 0 (got 0)"),
        (
            {"period": math.inf},
            "supervisor 'root': period must be a finite number > 0 (got inf)",
        ),
        (
            {"strategy": "one_for_some"},
            (
                "supervisor 'root': strategy must be one of one_for_one, one_for_all, rest_for_one "
                "(got 'one_for_some')"
            ),
        ),
        ({"name": ""}, "supervisor '': name must not be empty (got '')"),
    ],
)
def test_a_bad_supervisor_is_named_by_path_and_field(
    lab: Lab, settings: dict[str, object], message: str
) -> None:
    spec = SupervisorSpec(**{"name": "root", "children": (lab.child("a"),), **settings})  # type: ignore[arg-type]
    with pytest.raises(InvalidChildSpec) as caught:
        validate(spec)
    assert str(caught.value) == message


def test_duplicate_names_are_refused(lab: Lab) -> None:
    inner = supervisor("carriers", "one_for_one", [lab.child("sim"), lab.child("sim")])
    with pytest.raises(InvalidChildSpec) as caught:
        validate(SupervisorSpec(name="root", children=(inner,)))
    assert str(caught.value) == (
        "supervisor 'root/carriers': child name 'sim' is used twice; "
        "names must be unique among siblings"
    )


def test_builders_check_their_own_arguments(lab: Lab) -> None:
    with pytest.raises(InvalidChildSpec, match=r"supervisor 'x': strategy must be one of"):
        supervisor("x", "round_robin", [])
    with pytest.raises(InvalidChildSpec, match=r"pool 'p': size must be an integer >= 1 \(got 0\)"):
        pool("p", object, 0)  # type: ignore[arg-type]


async def test_nothing_starts_when_any_part_of_the_tree_is_invalid(lab: Lab) -> None:
    spec = nested(lab, backoff=Backoff(min=2.0, max=1.0))
    with pytest.raises(InvalidChildSpec, match=r"backoff\.max must be >= backoff\.min"):
        async with open_supervisor(spec):
            pytest.fail("nothing may start")
    assert lab.log == []


def test_a_valid_tree_passes(lab: Lab) -> None:
    spec = nested(lab, restart=Restart.TRANSIENT, backoff=Backoff.exponential(), shutdown=0)
    validate(spec)
    assert isinstance(spec.children[1], ChildSpec)
