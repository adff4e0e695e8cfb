"""Throughput: many submits through CarrierLink(window=50) to smpp34's server, receipts included."""

import time

import trio
from smpp_harness import Peers, Sink, options, serving  # type: ignore[import-not-found]

from rabbitry.carriers import CarrierLink, Submission
from rabbitry.carriers.smpp import SmppConnector

MESSAGES = 3_000
FLOOR = 500  # segments/s; the bench (python -m bench carriers) aims at 2,000 and more


async def test_submits_flow_through_a_window_of_50(peers: Peers) -> None:
    peer = await peers.start("smpp34", "--quiet")
    sink = Sink()
    connector = SmppConnector("acme", options(peer))
    link = CarrierLink(connector, tps=None, window=50)
    carrier_ids: set[str] = set()

    async def producer(numbers: range) -> None:
        for n in numbers:
            accepted = await link.submit(Submission.of(f"m-{n}", "+33612345678", "Shop", f"#{n}"))
            carrier_ids.update(accepted.carrier_ids)

    async with serving(connector, sink):
        started = time.perf_counter()
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for first in range(50):
                    nursery.start_soon(producer, range(first, MESSAGES, 50))
        elapsed = time.perf_counter() - started
        await sink.wait_for(MESSAGES)  # one receipt each
    rate = MESSAGES / elapsed
    assert link.statistics().segments == MESSAGES
    assert link.statistics().failed == {}
    assert len(carrier_ids) == MESSAGES
    assert {event.carrier_id for event in sink.events} == carrier_ids  # type: ignore[union-attr]
    assert rate > FLOOR, f"{rate:.0f} segments/s ({MESSAGES} in {elapsed:.2f} s)"
