"""The simulator connector, end to end: run() with a sink collecting events, submits, options."""

import time
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing
from trio.testing import MockClock

from rabbitry.carriers import (
    CarrierDown,
    CarrierLink,
    DeliveryEvent,
    EventSink,
    InboundEvent,
    PermanentError,
    RetryableError,
    SimulatorConnector,
    Submission,
)


class Sink:
    """Stores events with the trio time they arrived."""

    def __init__(self) -> None:
        self.events: list[tuple[float, DeliveryEvent | InboundEvent]] = []

    async def __call__(self, event: DeliveryEvent | InboundEvent) -> None:
        await trio.lowlevel.checkpoint()
        self.events.append((trio.current_time(), event))


def sms(message_id: str, to: str = "+33612345678", text: str = "hello") -> Submission:
    return Submission.of(message_id, to, "Shop", text)


async def running(
    nursery: trio.Nursery, options: dict[str, object], sink: EventSink
) -> SimulatorConnector:
    simulator = SimulatorConnector("sim", options)
    await nursery.start(simulator.run, sink)
    return simulator


@pytest.fixture
async def nursery() -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as nursery:
        yield nursery
        nursery.cancel_scope.cancel()


async def test_accepted_messages_are_reported_delivered_after_dlr_delay(
    nursery: trio.Nursery, autojump_clock: MockClock
) -> None:
    sink = Sink()
    simulator = await running(nursery, {"dlr_delay": 5}, sink)
    assert simulator.health() == "bound"
    assert (await simulator.submit(sms("m-1"))).carrier_ids == (simulator.id_prefix + "1",)
    await trio.sleep(1)
    long = sms("m-2", text="x" * 400)
    assert (await simulator.submit(long)).carrier_ids == (
        simulator.id_prefix + "2",
        simulator.id_prefix + "3",
        simulator.id_prefix + "4",
    )
    await trio.sleep(4.9)
    assert sink.events == [(5, DeliveryEvent(simulator.id_prefix + "1", "delivered"))]
    assert simulator.pending_reports == 1
    await trio.sleep(0.2)
    # One report per message, under its first part's id.
    assert sink.events[1:] == [(6, DeliveryEvent(simulator.id_prefix + "2", "delivered"))]
    assert simulator.pending_reports == 0


async def test_reject_undeliverable_and_retry_prefixes(
    nursery: trio.Nursery, autojump_clock: MockClock
) -> None:
    options: dict[str, object] = {
        "reject_prefixes": ["+999"],
        "undeliverable_prefixes": ["+4477"],
        "retry_prefixes": ["+888", "+4477"],
        "retry_times": 2,
    }
    sink = Sink()
    simulator = await running(nursery, options, sink)

    with pytest.raises(PermanentError, match=r"rejects '\+9991234567'") as rejected:
        await simulator.submit(sms("r-1", "+9991234567"))
    assert rejected.value.code == "rejected"

    for attempt in (1, 2):
        with pytest.raises(RetryableError, match=f"{attempt} of 2") as failed:
            await simulator.submit(sms("t-1", "+8881234567"))
        assert failed.value.code == "temporary"
    with pytest.raises(RetryableError):  # counted per message id
        await simulator.submit(sms("t-2", "+8881234567"))
    assert (await simulator.submit(sms("t-1", "+8881234567"))).carrier_ids == (
        simulator.id_prefix + "1",
    )
    # undeliverable comes before retry: accepted at once, then reported undelivered.
    assert (await simulator.submit(sms("u-1", "+447712345678"))).carrier_ids == (
        simulator.id_prefix + "2",
    )
    await trio.testing.wait_all_tasks_blocked()
    assert [event for _, event in sink.events] == [
        DeliveryEvent(simulator.id_prefix + "1", "delivered"),
        DeliveryEvent(simulator.id_prefix + "2", "undelivered", "001"),
    ]


async def test_latency_is_the_time_a_submit_takes(
    nursery: trio.Nursery, autojump_clock: MockClock
) -> None:
    simulator = await running(nursery, {"latency": 0.25}, Sink())
    async with trio.open_nursery() as submits:
        for index in range(10):
            submits.start_soon(simulator.submit, sms(f"m-{index}"))
    assert trio.current_time() == 0.25  # concurrent submits overlap


async def test_inbound_messages_go_through_the_sink(nursery: trio.Nursery) -> None:
    sink = Sink()
    simulator = await running(nursery, {}, sink)
    await simulator.inject_inbound("+33612345678", "+4470000", "STOP")
    assert [event for _, event in sink.events] == [InboundEvent("+33612345678", "+4470000", "STOP")]


async def test_without_run_nothing_is_connected() -> None:
    simulator = SimulatorConnector("sim", {})
    assert simulator.health() == "down"
    with pytest.raises(CarrierDown, match="carrier 'sim' is not connected") as down:
        await simulator.submit(sms("m-1"))
    assert down.value.code == "down"
    assert isinstance(down.value, ConnectionError)
    with pytest.raises(CarrierDown, match="start run"):
        await simulator.inject_inbound("+33612345678", "+4470000", "STOP")


async def test_a_simulator_that_is_down_fails_to_run_and_to_submit() -> None:
    simulator = SimulatorConnector("sim", {"down": True})
    with pytest.raises(CarrierDown, match=r"simulated down \(options.down = true\)"):
        await simulator.run(Sink())
    assert simulator.health() == "down"
    with pytest.raises(CarrierDown):
        await simulator.submit(sms("m-1"))


async def test_it_runs_once_at_a_time(nursery: trio.Nursery) -> None:
    simulator = await running(nursery, {}, Sink())
    with pytest.raises(RuntimeError, match="already running"):
        await simulator.run(Sink())
    assert simulator.health() == "bound"


async def test_a_report_not_stored_when_run_stops_is_pushed_by_the_next_run(
    autojump_clock: MockClock,
) -> None:
    simulator = SimulatorConnector("sim", {})

    async def stuck(event: DeliveryEvent | InboundEvent) -> None:
        await trio.sleep_forever()  # never stored

    async with trio.open_nursery() as nursery:
        await nursery.start(simulator.run, stuck)
        await simulator.submit(sms("m-1"))
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert simulator.health() == "down"
    assert simulator.pending_reports == 1
    sink = Sink()
    async with trio.open_nursery() as nursery:
        await nursery.start(simulator.run, sink)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert [event for _, event in sink.events] == [
        DeliveryEvent(simulator.id_prefix + "1", "delivered")
    ]
    assert simulator.pending_reports == 0


async def test_ten_thousand_messages_through_a_link_in_a_few_seconds(
    nursery: trio.Nursery,
) -> None:
    reported: set[str] = set()
    all_reported = trio.Event()

    async def sink(event: DeliveryEvent | InboundEvent) -> None:
        assert isinstance(event, DeliveryEvent)
        reported.add(event.carrier_id)
        if len(reported) == 10_000:
            all_reported.set()

    simulator = await running(nursery, {}, sink)
    link = CarrierLink(simulator, tps=None, window=100)
    started = time.perf_counter()
    with trio.fail_after(30):
        async with trio.open_nursery() as senders:
            for sender in range(100):
                senders.start_soon(send_many, link, sender, 100)
        await all_reported.wait()
    elapsed = time.perf_counter() - started
    assert link.statistics().accepted == 10_000
    assert elapsed < 10, f"10,000 messages took {elapsed:.1f} s"


async def send_many(link: CarrierLink, sender: int, count: int) -> None:
    for index in range(count):
        await link.submit(sms(f"{sender}-{index}"))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"latncy": 1},
            "carriers.sim.options.latncy is not a simulator option \\(known: dlr_delay, down",
        ),
        ({"reject_prefixes": "+33"}, "reject_prefixes must be a list of non-empty prefix"),
        (
            {"undeliverable_prefixes": [44]},
            "undeliverable_prefixes must be a list .* \\(got \\[44\\]",
        ),
        ({"retry_prefixes": [""]}, "retry_prefixes must be a list"),
        (
            {"retry_times": -1},
            "carriers.sim.options.retry_times must be an integer >= 0 \\(got -1\\)",
        ),
        ({"retry_times": True}, "retry_times must be an integer >= 0 \\(got True\\)"),
        ({"latency": -0.5}, "latency must be a number of seconds >= 0 \\(got -0.5\\)"),
        ({"dlr_delay": "5"}, "dlr_delay must be a number of seconds >= 0 \\(got '5'\\)"),
        ({"dlr_delay": float("nan")}, "dlr_delay must be a number"),
        ({"down": "yes"}, "carriers.sim.options.down must be true or false \\(got 'yes'\\)"),
    ],
)
def test_options_are_checked(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SimulatorConnector("sim", options)


def test_options_have_defaults() -> None:
    options = SimulatorConnector("sim", {"latency": 1, "reject_prefixes": ("+1",)}).options
    assert (options.latency, options.dlr_delay, options.retry_times, options.down) == (
        1.0,
        0.0,
        1,
        False,
    )
    assert options.reject_prefixes == ("+1",)


async def test_carrier_ids_are_unique_across_connectors_of_one_carrier(
    nursery: trio.Nursery, autojump_clock: MockClock
) -> None:
    # Two daemons (or one daemon before and after a restart) each make their own connector.
    first = await running(nursery, {}, Sink())
    second = await running(nursery, {}, Sink())
    ids = [(await simulator.submit(sms("m-1"))).carrier_ids for simulator in (first, second)]
    assert ids[0] != ids[1]
    assert all(carrier_id.startswith("sim-") for (carrier_id,) in ids)
    assert first.id_prefix != second.id_prefix


async def test_drain_pushes_every_pending_report_before_it_is_due(
    autojump_clock: MockClock,
) -> None:
    sink = Sink()
    simulator = SimulatorConnector("sim", {"dlr_delay": 60})
    async with trio.open_nursery() as nursery:
        await nursery.start(simulator.run, sink)
        for n in range(5):
            await simulator.submit(sms(f"m-{n}"))
        await trio.sleep(1)
        assert simulator.pending_reports == 5
        await simulator.drain()
        assert trio.current_time() == 1  # at once, not after dlr_delay
        assert simulator.pending_reports == 0
        assert [event.carrier_id for _, event in sink.events] == [
            f"{simulator.id_prefix}{n}" for n in range(1, 6)
        ]
        nursery.cancel_scope.cancel()


async def test_drain_waits_for_the_sink_to_take_every_report(autojump_clock: MockClock) -> None:
    taken: list[DeliveryEvent | InboundEvent] = []

    async def slow(event: DeliveryEvent | InboundEvent) -> None:
        await trio.sleep(2)  # confirmed by RabbitMQ two seconds later
        taken.append(event)

    simulator = SimulatorConnector("sim", {"dlr_delay": 30})
    async with trio.open_nursery() as nursery:
        await nursery.start(simulator.run, slow)
        await simulator.submit(sms("m-1"))
        await simulator.submit(sms("m-2"))
        await simulator.drain()
        assert trio.current_time() == 2
        assert len(taken) == 2
        nursery.cancel_scope.cancel()
    # After a drain, a new run (the same connector bound again) waits for dlr_delay again.
    sink = Sink()
    async with trio.open_nursery() as nursery:
        await nursery.start(simulator.run, sink)
        await simulator.submit(sms("m-3"))
        await trio.sleep(29)
        assert sink.events == []
        await trio.sleep(2)
        assert len(sink.events) == 1
        nursery.cancel_scope.cancel()
