"""The HTTP connector behind a `CarrierLink`: a window of requests in flight, throttling."""

import itertools
import json

import trio
import trio.testing
from conftest import Served
from http_harness import Reply, Request, running

from rabbitry.carriers import CarrierLink, Submission
from rabbitry.carriers.http import HttpConnector

MESSAGES = 300
WINDOW = 20


async def test_hundreds_of_messages_go_through_a_window_of_twenty(carrier: Served) -> None:
    """The carrier holds requests until WINDOW wait: the link keeps exactly WINDOW in flight."""
    waiting: list[trio.Event] = []
    peak = 0
    ids = itertools.count(1)

    async def batched(request: Request) -> Reply:
        nonlocal peak
        released = trio.Event()
        waiting.append(released)
        peak = max(peak, len(waiting))
        if len(waiting) == WINDOW:
            for event in waiting:
                event.set()
            waiting.clear()
        await released.wait()
        body = {"id": f"c-{next(ids)}", "echo": request.json()["client_ref"]}
        return 200, {"content-type": "application/json"}, json.dumps(body).encode()

    carrier.app.behaviour = batched
    http = HttpConnector(
        "acme", {"url": f"{carrier.url}/sms", "response": {"id_path": "id"}}, environ={}
    )
    link = CarrierLink(http, tps=None, window=WINDOW)
    results: dict[str, tuple[str, ...]] = {}

    async def send(number: int) -> None:
        submission = Submission.of(f"m-{number}", "+33612345678", "Shop", f"Hello {number}")
        results[submission.message_id] = (await link.submit(submission)).carrier_ids

    with trio.fail_after(60):
        async with running(http), trio.open_nursery() as nursery:
            for number in range(MESSAGES):
                nursery.start_soon(send, number)
    assert len(results) == MESSAGES
    assert len({ids[0] for ids in results.values()}) == MESSAGES  # one distinct id each
    assert peak == WINDOW
    statistics = link.statistics()
    assert (statistics.accepted, statistics.failed, statistics.in_flight) == (MESSAGES, {}, 0)
    connections = {request.client for request in carrier.app.requests}
    assert len(carrier.app.requests) == MESSAGES
    assert len(connections) <= WINDOW  # kept alive and reused, not one per message


async def test_a_429_pauses_the_link_for_its_retry_after(
    carrier: Served, autojump_clock: trio.testing.MockClock
) -> None:
    answers = iter([429, 429, 200])

    async def throttling(request: Request) -> Reply:
        status = next(answers)
        headers = {"retry-after": "3"} if status == 429 else {}
        return status, headers, b""

    carrier.app.behaviour = throttling
    http = HttpConnector("acme", {"url": f"{carrier.url}/sms"}, environ={})
    link = CarrierLink(http, tps=100, window=WINDOW)
    async with running(http):
        start = trio.current_time()
        accepted = await link.submit(Submission.of("m-1", "+33612345678", "Shop", "Hi"))
        elapsed = trio.current_time() - start
    assert accepted.carrier_ids == ("m-1",)
    assert 6 <= elapsed < 7
    assert link.statistics().throttled == 2
    assert len(carrier.app.requests) == 3
