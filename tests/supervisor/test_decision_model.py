"""The pure core against a small model of OTP's rules, written here from the OTP docs.

Hypothesis plays random sequences of crashes, normal exits and passing time against both; after
every step they must agree on who is stopped, who restarts, in what order, when, and when the
supervisor gives up.
"""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from supervisor import Backoff, ChildSpec, Restart, Strategy, SupervisorSpec
from supervisor import _decision as core

NAMES = ("a", "b", "c", "d")


async def never(*, task_status: object) -> None:
    raise AssertionError("the pure core never starts anything")


class Model:
    """OTP's rules, plainly: lists and sets, no shared code with the core."""

    def __init__(self, tree: SupervisorSpec) -> None:
        self.tree = tree
        self.order = [child.name for child in tree.children]
        self.kind = {child.name: child.restart for child in tree.children}
        self.delay = {child.name: child.backoff.min for child in tree.children}
        self.running: set[str] = set(self.order)
        self.waiting: dict[str, float] = {}
        self.ended: set[str] = set()
        self.restarts: list[float] = []
        self.gave_up = False

    def alive(self, name: str) -> bool:
        return name in self.running or name in self.waiting

    def ends(self, name: str, crashed: bool, now: float) -> tuple[list[str], list[str], bool]:
        """Returns (stopped in order, restarting in order, gave up)."""
        if name not in self.running:
            return [], [], False
        kind = self.kind[name]
        again = kind == Restart.PERMANENT or (kind == Restart.TRANSIENT and crashed)
        self.running.discard(name)
        if not again:
            if kind == Restart.TEMPORARY:
                self.order.remove(name)
            else:
                self.ended.add(name)
            return [], [], False
        self.restarts = [t for t in self.restarts if now - t <= self.tree.period] + [now]
        if len(self.restarts) > self.tree.intensity:
            self.gave_up = True
            stopped = [other for other in reversed(self.order) if other in self.running]
            self.running.clear()
            self.waiting.clear()
            return stopped, [], True
        if self.tree.strategy == Strategy.ONE_FOR_ONE:
            group = [name]
        else:
            first = 0 if self.tree.strategy == Strategy.ONE_FOR_ALL else self.order.index(name)
            group = [o for o in self.order[first:] if o == name or self.alive(o)]
        stopped = [o for o in reversed(group) if o != name and o in self.running]
        for other in group:
            self.running.discard(other)
        dropped = [o for o in group if o != name and self.kind[o] == Restart.TEMPORARY]
        for other in dropped:
            self.order.remove(other)
            self.waiting.pop(other, None)
        restarting = [o for o in group if o not in dropped]
        for other in restarting:
            self.waiting[other] = now + self.delay[name]
        return stopped, restarting, False

    def due(self, now: float) -> list[str]:
        return [name for name in self.order if self.waiting.get(name, float("inf")) <= now]


children_strategy = st.lists(
    st.tuples(st.sampled_from(list(Restart)), st.sampled_from([0.0, 1.0, 2.5])),
    min_size=1,
    max_size=len(NAMES),
)


class CoreAgainstModel(RuleBasedStateMachine):
    @initialize(
        strategy=st.sampled_from(list(Strategy)),
        children=children_strategy,
        intensity=st.integers(0, 4),
        period=st.sampled_from([1.0, 5.0, 30.0]),
    )
    def build(
        self,
        strategy: Strategy,
        children: list[tuple[Restart, float]],
        intensity: int,
        period: float,
    ) -> None:
        specs = tuple(
            ChildSpec(name=name, start=never, restart=restart, backoff=Backoff.constant(delay))
            for name, (restart, delay) in zip(NAMES, children, strict=False)
        )
        self.tree = SupervisorSpec(
            name="root", strategy=strategy, children=specs, intensity=intensity, period=period
        )
        self.specs = list(specs)
        self.now = 0.0
        self.rng = random.Random(0)
        self.state = core.initial_state(self.tree)
        for spec in specs:
            self.state = core.starting(self.state, spec.name)
            self.state = core.started(self.state, spec.name, self.now)
        self.model = Model(self.tree)

    @rule(name=st.sampled_from(NAMES), crashed=st.booleans())
    def child_ends(self, name: str, crashed: bool) -> None:
        if self.model.gave_up:
            return  # a supervisor that gave up is gone; nothing more happens to it
        if name not in self.state.children:
            assert name not in self.model.order
            return
        failure = core.Failure(type="Boom", message="x") if crashed else None
        event = core.Exited(name=name, now=self.now, failure=failure)
        decision = core.decide(self.state, self.specs, event, self.rng)
        stopped, restarting, gave_up = self.model.ends(name, crashed, self.now)
        assert decision.give_up == gave_up
        assert list(decision.stop) == stopped
        assert list(decision.restart) == restarting
        if restarting:
            assert decision.restart_at == self.model.waiting[name]
        self.state = decision.state
        self.specs = [spec for spec in self.specs if spec.name not in decision.removed]

    @rule(seconds=st.sampled_from([0.0, 0.5, 1.0, 2.5, 10.0]))
    def time_passes(self, seconds: float) -> None:
        if self.model.gave_up:
            return
        self.now += seconds
        expected = self.model.due(self.now)
        assert list(core.due(self.state, self.specs, self.now)) == expected
        for name in expected:
            self.state = core.starting(self.state, name)
            self.state = core.started(self.state, name, self.now)
            del self.model.waiting[name]
            self.model.running.add(name)

    @invariant()
    def agree_on_every_child(self) -> None:
        if not hasattr(self, "model"):
            return
        assert [spec.name for spec in self.specs] == self.model.order
        assert sorted(self.state.children) == sorted(self.model.order)
        for name, child in self.state.children.items():
            if self.model.gave_up:
                assert child.status is core.Status.STOPPED
            elif name in self.model.running:
                assert child.status is core.Status.RUNNING
            elif name in self.model.waiting:
                assert child.status is core.Status.BACKING_OFF
                assert child.restart_at == self.model.waiting[name]
            else:
                assert name in self.model.ended
                assert child.status is core.Status.STOPPED


CoreAgainstModel.TestCase.settings = settings(max_examples=300, stateful_step_count=40)
TestCoreAgainstModel = CoreAgainstModel.TestCase


@given(
    backoff=st.builds(
        Backoff.exponential,
        min=st.floats(0.001, 10.0),
        max=st.floats(10.0, 1000.0),
        multiplier=st.floats(1.0, 10.0),
        jitter=st.floats(0.0, 1.0),
    ),
    attempt=st.integers(0, 10_000),
    seed=st.integers(0, 2**32),
)
def test_backoff_delay_stays_within_its_bounds(backoff: Backoff, attempt: int, seed: int) -> None:
    assert backoff.problems() == []
    assert backoff.min <= backoff.delay(attempt, random.Random(seed)) <= backoff.max


@given(attempt=st.integers(0, 50))
def test_backoff_without_jitter_doubles_up_to_its_cap(attempt: int) -> None:
    backoff = Backoff.exponential(min=0.5, max=60.0, multiplier=2.0, jitter=0.0)
    assert backoff.delay(attempt, random.Random()) == min(0.5 * 2**attempt, 60.0)


@pytest.mark.parametrize(
    ("backoff", "kind"),
    [
        (Backoff.none(), "none"),
        (Backoff.constant(1.5), "constant"),
        (Backoff.exponential(), "exponential"),
    ],
)
def test_backoff_kinds(backoff: Backoff, kind: str) -> None:
    assert backoff.kind == kind
    if kind == "none":
        assert backoff.delay(5, random.Random()) == 0.0
    if kind == "constant":
        assert {backoff.delay(n, random.Random(n)) for n in range(5)} == {1.5}


@given(
    moments=st.lists(st.floats(0.0, 100.0), max_size=30).map(sorted),
    intensity=st.integers(0, 5),
    period=st.floats(0.1, 20.0),
)
def test_restart_window_counts_only_the_period(
    moments: list[float], intensity: int, period: float
) -> None:
    window = core.RestartWindow(intensity=intensity, period=period)
    for index, now in enumerate(moments):
        window, exceeded = window.add(now)
        recent = [moment for moment in moments[: index + 1] if now - moment <= period]
        assert exceeded == (len(recent) > intensity)
        assert window.count(now) == min(len(recent), intensity + 1)  # it keeps no more


def test_a_restart_exactly_one_period_old_still_counts() -> None:
    window, exceeded = core.RestartWindow(intensity=1, period=5.0).add(0.0)
    assert not exceeded
    assert window.add(5.0)[1]
    assert not window.add(5.001)[1]
