"""The plugin API: submissions, errors, events, and the minimal connector of the docstring."""

import textwrap
from typing import Any

import pytest
import trio
import trio.testing

import rabbitry.carriers._connector as connector_module
from rabbitry.carriers import (
    Accepted,
    CarrierDown,
    CarrierError,
    CarrierLink,
    Connector,
    DeliveryEvent,
    InboundEvent,
    PermanentError,
    RetryableError,
    SimulatorConnector,
    Submission,
    Throttled,
    load_connector,
)


def test_a_submission_is_measured_and_cut_by_segment() -> None:
    short = Submission.of("m-1", "+33612345678", "Shop", "Hello €")
    assert (short.encoding, short.segments, short.parts) == ("gsm7", 1, ("Hello €",))
    long = Submission.of("m-2", "+33612345678", "Shop", "ç" * 140)
    assert (long.encoding, long.segments) == ("ucs2", 3)
    assert "".join(long.parts) == long.text
    assert [len(part) for part in long.parts] == [67, 67, 6]


@pytest.mark.parametrize(("segments", "parts"), [(0, ()), (2, ("only one",)), (1, ("a", "b"))])
def test_a_submission_has_one_part_per_segment(segments: int, parts: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="Submission 'm-1' must have segments >= 1 and one part"):
        Submission("m-1", "+33612345678", "Shop", "".join(parts), "gsm7", segments, parts)


def test_errors_carry_a_code_and_what_to_do() -> None:
    assert CarrierError("x").code == "error"
    assert str(CarrierError()) == "CarrierError"
    throttled = Throttled("slow down", retry_after=2.5, code="0x00000058")
    assert (throttled.code, throttled.retry_after, str(throttled)) == (
        "0x00000058",
        2.5,
        "slow down",
    )
    assert Throttled().retry_after == 1.0
    assert (RetryableError().code, RetryableError().retry_after) == ("temporary", None)
    assert RetryableError(retry_after=30).retry_after == 30
    assert PermanentError("invalid destination").code == "rejected"
    down = CarrierDown("not bound")
    assert down.code == "down"
    assert isinstance(down, ConnectionError)
    assert str(down) == "not bound"
    for error in (throttled, RetryableError(), PermanentError(), down):
        assert isinstance(error, CarrierError)


def test_events_are_frozen_values() -> None:
    assert DeliveryEvent("sim-1", "undelivered", "001") == DeliveryEvent(
        "sim-1", status="undelivered", error="001"
    )
    assert DeliveryEvent("sim-1", "delivered").error == ""
    assert InboundEvent("+33612345678", "+4470000", "STOP").text == "STOP"
    with pytest.raises(AttributeError):
        DeliveryEvent("sim-1", "delivered").status = "failed"  # type: ignore[misc]


def test_the_simulator_is_a_connector() -> None:
    connector: Connector = SimulatorConnector("sim", {})  # checked by mypy against the Protocol
    assert connector.name == "sim"


@pytest.fixture
def echo_plugin(install_plugin: Any) -> str:
    """The minimal connector of `rabbitry.carriers._connector`'s docstring, installed as "echo"."""
    doc = connector_module.__doc__ or ""
    example = doc[doc.index("    import itertools") : doc.index("    # pyproject.toml")]
    install_plugin("echo_carrier", {"echo": "echo_carrier:EchoConnector"}, textwrap.dedent(example))
    return "echo"


async def test_the_documented_minimal_connector_works(echo_plugin: str) -> None:
    connector = load_connector(echo_plugin)("echo", {})
    with pytest.raises(CarrierDown):
        await connector.submit(Submission.of("m-0", "+33612345678", "Shop", "hi"))
    events: list[DeliveryEvent | InboundEvent] = []

    async def sink(event: DeliveryEvent | InboundEvent) -> None:
        events.append(event)

    link = CarrierLink(connector, tps=100)
    async with trio.open_nursery() as nursery:
        await nursery.start(connector.run, sink)
        assert connector.health() == "bound"
        accepted = await link.submit(Submission.of("m-1", "+33612345678", "Shop", "x" * 200))
        assert accepted == Accepted(("echo-1", "echo-2"))
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert events == [DeliveryEvent("echo-1", "delivered")]
    assert connector.health() == "down"
