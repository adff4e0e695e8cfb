"""The simulator: a built-in carrier connector that sends nothing, for tests, demos and benchmarks.

    [[carriers]]
    name = "sim"
    plugin = "simulator"
    prefixes = ["+"]
    options = { reject_prefixes = ["+999"], retry_prefixes = ["+888"], dlr_delay = 2.0 }

    simulator = SimulatorConnector("sim", {"undeliverable_prefixes": ["+4477"]})
    async with trio.open_nursery() as nursery:
        await nursery.start(simulator.run, sink)          # reports flow while run() runs
        accepted = await simulator.submit(Submission.of("m-1", "+33612345678", "Shop", "Hi"))
        accepted.carrier_ids                              # ('sim-1',): one id per part
        # dlr_delay seconds later: await sink(DeliveryEvent("sim-1", "delivered"))
        await simulator.inject_inbound("+33612345678", "+4470000", "STOP")

Options (each checked: a wrong one raises `ValueError` naming the option and the value):

- `reject_prefixes` (list of str): `submit` raises `PermanentError(code="rejected")`.
- `undeliverable_prefixes` (list of str): accepted, then reported "undelivered" (error "001").
- `retry_prefixes` (list of str): `submit` raises `RetryableError(code="temporary")` the first
  `retry_times` times for each message id, then accepts it.
- `retry_times` (int >= 0, default 1).
- `latency` (seconds >= 0, default 0): how long each `submit` takes.
- `dlr_delay` (seconds >= 0, default 0): from acceptance to its delivery report.
- `down` (bool, default false): `run` raises and `submit` raises `CarrierDown`.

A destination matches the first of these lists that holds a prefix of it, in the order above.

Accepted parts get the ids `f"{id_prefix}{n}"`, n counting up from 1 over the connector's life,
where `id_prefix` is `f"{name}-{10 random hex digits}-"`, new for every connector made: ids are
unique per carrier across daemons and restarts (as a real carrier's are), so a delivery report
never matches another daemon's message. One delivery report goes per message, not per part,
under the id of its first part (a real carrier reports every part; the platform matches a report
on any of them).

`submit` only appends to a queue of pending reports; `run` is the one task that drains it, in
order (the due times only grow since `dlr_delay` is fixed), pushing each report through the sink
and dropping it only once the sink returned. So reports flow only while `run` runs, and one that
was being pushed when `run` was cancelled is pushed again by the next `run`, as a carrier resends
an unacknowledged report. `submit` raises `CarrierDown` while `run` is not running, as a real
connector does when it is not bound.

Pending reports live in this process only (a real carrier keeps them and resends them on the
next bind), so a graceful stop calls `drain()` before cancelling `run`: it pushes every pending
report at once, due or not, and returns once the sink took them all.
"""

import collections
import itertools
import secrets
from collections.abc import Mapping

import attrs
import trio

from rabbitry.carriers._connector import (
    Accepted,
    CarrierDown,
    DeliveryEvent,
    EventSink,
    Health,
    InboundEvent,
    PermanentError,
    RetryableError,
    Submission,
)

UNDELIVERED_ERROR = "001"
REPORTS_IN_FLIGHT = 1024
"""Delivery reports pushed to the sink at once (a real carrier has many unacknowledged too)."""
"""The error code the simulator puts on an "undelivered" report."""


@attrs.frozen
class SimulatorOptions:
    """The simulator's options, checked (see the module docstring)."""

    reject_prefixes: tuple[str, ...] = ()
    undeliverable_prefixes: tuple[str, ...] = ()
    retry_prefixes: tuple[str, ...] = ()
    retry_times: int = 1
    latency: float = 0.0
    dlr_delay: float = 0.0
    down: bool = False

    @classmethod
    def parse(cls, name: str, options: Mapping[str, object]) -> "SimulatorOptions":
        """Checks `options` of carrier `name`; raises `ValueError` naming a wrong one."""
        known = set(attrs.fields_dict(cls))
        for key in options:
            if key not in known:
                raise ValueError(
                    f"carriers.{name}.options.{key} is not a simulator option"
                    f" (known: {', '.join(sorted(known))})"
                )
        return cls(
            reject_prefixes=_prefixes(name, options, "reject_prefixes"),
            undeliverable_prefixes=_prefixes(name, options, "undeliverable_prefixes"),
            retry_prefixes=_prefixes(name, options, "retry_prefixes"),
            retry_times=_count(name, options, "retry_times", 1),
            latency=_seconds(name, options, "latency"),
            dlr_delay=_seconds(name, options, "dlr_delay"),
            down=_flag(name, options, "down"),
        )


def _prefixes(name: str, options: Mapping[str, object], key: str) -> tuple[str, ...]:
    value = options.get(key, [])
    if not isinstance(value, list | tuple) or not all(
        isinstance(item, str) and item for item in value
    ):
        raise ValueError(
            f"carriers.{name}.options.{key} must be a list of non-empty prefix strings"
            f" (got {value!r})"
        )
    return tuple(value)


def _count(name: str, options: Mapping[str, object], key: str, default: int) -> int:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"carriers.{name}.options.{key} must be an integer >= 0 (got {value!r})")
    return value


def _seconds(name: str, options: Mapping[str, object], key: str) -> float:
    value = options.get(key, 0.0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1e9:
        raise ValueError(
            f"carriers.{name}.options.{key} must be a number of seconds >= 0 (got {value!r})"
        )
    return float(value)


def _flag(name: str, options: Mapping[str, object], key: str) -> bool:
    value = options.get(key, False)
    if not isinstance(value, bool):
        raise ValueError(f"carriers.{name}.options.{key} must be true or false (got {value!r})")
    return value


class SimulatorConnector:
    """A connector that answers from its options, without any network; see the module docstring."""

    def __init__(self, name: str, options: Mapping[str, object]) -> None:
        self.name = name
        self.options = SimulatorOptions.parse(name, options)
        self.id_prefix = f"{name}-{secrets.token_hex(5)}-"
        self._ids = itertools.count(1)
        self._retries: dict[str, int] = {}  # message id -> temporary failures so far
        self._pending: collections.deque[tuple[float, DeliveryEvent]] = collections.deque()
        self._wakeup = trio.lowlevel.ParkingLot()
        self._sink: EventSink | None = None
        self._flush = trio.Event()  # set by drain(): push what is pending without waiting
        self._sending: dict[int, tuple[float, DeliveryEvent]] = {}  # being pushed, by key
        self._drained = trio.lowlevel.ParkingLot()

    async def run(
        self, events: EventSink, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Binds (unless `down`), then pushes the pending delivery reports as they fall due."""
        if self.options.down:
            raise CarrierDown(f"carrier {self.name!r} is simulated down (options.down = true)")
        if self._sink is not None:
            raise RuntimeError(f"simulator {self.name!r} is already running")
        self._sink = events
        self._flush = trio.Event()
        sending = self._sending = {}
        limiter = trio.CapacityLimiter(REPORTS_IN_FLIGHT)

        async def push(key: int, report: tuple[float, DeliveryEvent]) -> None:
            try:
                await events(report[1])
                del sending[key]  # only a report the sink took is gone
            finally:
                limiter.release_on_behalf_of(key)
                self._drained.unpark_all()

        try:
            async with trio.open_nursery() as nursery:
                task_status.started()
                for key in itertools.count():
                    while not self._pending:
                        await self._wakeup.park()
                    with trio.move_on_at(self._pending[0][0]):
                        await self._flush.wait()
                    await limiter.acquire_on_behalf_of(key)
                    sending[key] = report = self._pending.popleft()
                    nursery.start_soon(push, key, report)
        finally:
            self._sink = None
            # Reports the sink did not take are pushed again by the next run, first.
            self._pending.extendleft(reversed(list(sending.values())))
            self._sending = {}
            self._drained.unpark_all()

    async def submit(self, submission: Submission) -> Accepted:
        """Accepts, rejects or fails `submission` by its destination, after `latency`."""
        options = self.options
        if options.down or self._sink is None:
            raise CarrierDown(f"carrier {self.name!r} is not connected")
        if options.latency:
            await trio.sleep(options.latency)
        else:
            await trio.lowlevel.checkpoint()
        to = submission.to
        if options.reject_prefixes and to.startswith(options.reject_prefixes):
            raise PermanentError(
                f"carrier {self.name!r} rejects {to!r} (simulated by reject_prefixes)",
                code="rejected",
            )
        undeliverable = bool(options.undeliverable_prefixes) and to.startswith(
            options.undeliverable_prefixes
        )
        if not undeliverable and options.retry_prefixes and to.startswith(options.retry_prefixes):
            failures = self._retries.get(submission.message_id, 0)
            if failures < options.retry_times:
                self._retries[submission.message_id] = failures + 1
                raise RetryableError(
                    f"carrier {self.name!r} failed message {submission.message_id!r} for now"
                    f" (simulated by retry_prefixes, {failures + 1} of {options.retry_times})",
                    code="temporary",
                )
            self._retries.pop(submission.message_id, None)
        ids = tuple(f"{self.id_prefix}{next(self._ids)}" for _ in submission.parts)
        report = (
            DeliveryEvent(ids[0], "undelivered", UNDELIVERED_ERROR)
            if undeliverable
            else DeliveryEvent(ids[0], "delivered")
        )
        self._pending.append((trio.current_time() + options.dlr_delay, report))
        self._wakeup.unpark()
        return Accepted(ids)

    async def drain(self) -> None:
        """Pushes every pending report now, not waiting for `dlr_delay`, and returns once the
        sink took them all (or `run` stopped). Call it after the last `submit` of a graceful
        stop, under its deadline, then cancel `run`."""
        self._flush.set()
        self._wakeup.unpark()
        while self._sink is not None and (self._pending or self._sending):
            await self._drained.park()

    async def inject_inbound(self, sender: str, to: str, text: str, carrier_id: str = "") -> None:
        """Pushes an inbound SMS (known to the carrier as `carrier_id`, if given) through the
        running `run`'s sink; returns once it is stored."""
        sink = self._sink
        if sink is None:
            raise CarrierDown(f"carrier {self.name!r} is not connected; start run() first")
        await sink(InboundEvent(sender, to, text, carrier_id))

    def health(self) -> Health:
        """The state: "bound" while `run` runs, "down" otherwise."""
        return "bound" if self._sink is not None else "down"

    @property
    def pending_reports(self) -> int:
        """Delivery reports not yet pushed (waiting for `dlr_delay` or for `run`)."""
        return len(self._pending)
