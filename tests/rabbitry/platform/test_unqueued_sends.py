"""No money stays held: a send whose batches cannot be published after its records were written
answers 503, and within `[sms] unqueued_timeout` (15 minutes by default) every message of it is
either queued (a retry with the same Idempotency-Key) or failed with its money released (the
reaper). The account actors are real, on the memory broker; a transport wrapper refuses the send
batches' publishes; trio's MockClock runs the 15 minutes, and the records' clock follows it."""

from __future__ import annotations

import functools
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from actors import Entities, run_partitioned
from broker import Envelope, PublishNacked, Transport, open_memory_transport
from rabbitry.billing import AsyncLedger, Ledger, MemoryStore, Money, RateCard
from rabbitry.gateway import KeyReused, SendAbandoned, Unavailable
from rabbitry.platform import (
    AccountActor,
    AccountClient,
    AsyncRecords,
    Fund,
    Names,
    OpenAccountCommand,
    Outcome,
    Outcomes,
    Outgoing,
    Publisher,
    Records,
    Sender,
    account_of,
    platform_codec,
    recover_once,
    run_reaper,
)
from rabbitry.platform._outbox import claim_after

from .conftest import InlineThreads, inline

NAMES = Names()
BASE = 1_800_000_000.0  # the wall clock at trio time 0
TO = ["+33600000001", "+33600000002", "+33600000003"]
TIMEOUT = 900.0


def clock() -> float:
    """Wall time that follows trio's (mock) clock."""
    return BASE + trio.current_time()


@attrs.define
class Pricing:
    card: RateCard = attrs.Factory(lambda: RateCard.from_table({"+33": "0.05"}, "EUR"))
    currency: str = "EUR"

    def route(self, number: str) -> tuple[str, ...]:
        return ("sim",)

    def rate_for(self, number: str, carrier: str) -> tuple[str, Money]:
        return self.card.rate_for(number)


class RefusingSends:
    """The memory transport, but a publish to a carrier's queue is nacked while `refusing`."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.refusing = True
        self.sent: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)

    async def publish(
        self, envelope: Envelope, *, exchange: str, routing_key: str, **options: Any
    ) -> None:
        if routing_key.startswith("sms.send."):
            if self.refusing:
                raise PublishNacked(f"the broker refused {envelope.message_id!r} (simulated)")
            self.sent.append(envelope.message_id)
            return  # no carrier in this test: taken, as RabbitMQ would
        await self.transport.publish(
            envelope, exchange=exchange, routing_key=routing_key, **options
        )


@attrs.frozen
class Platform:
    ledger: Ledger
    records: Records
    books: AsyncLedger  # the ledger and the records for the platform's code, inline
    log: AsyncRecords
    accounts: AccountClient
    transport: RefusingSends
    sender: Sender
    nursery: trio.Nursery


@asynccontextmanager
async def platform() -> AsyncIterator[Platform]:
    """Account actors on a memory broker, an account "a" with 1 EUR, a sender on the clock."""
    ledger, records = Ledger(MemoryStore()), Records.open(":memory:")
    books, log = AsyncLedger(ledger, InlineThreads()), inline(records)
    async with open_memory_transport() as memory:
        transport = RefusingSends(memory)
        publisher = Publisher(transport, platform_codec(), NAMES.exchange)  # type: ignore[arg-type]

        def account(account_id: str) -> AccountActor:
            return AccountActor(
                account_id,
                ledger=books,
                records=log,
                publisher=publisher,
                names=NAMES,
                currency="EUR",
            )

        await memory.declare(NAMES.layout.topology())
        async with trio.open_nursery() as nursery:
            entities = await nursery.start(Entities("accounts", account).run)
            handle = await nursery.start(
                functools.partial(
                    run_partitioned,
                    memory,
                    NAMES.layout,
                    entities,
                    account_of,
                    codec=publisher.codec,
                    declare=False,
                )
            )
            accounts = AccountClient(publisher, NAMES)
            await accounts.ask(OpenAccountCommand(account="a", currency="EUR", operation="o"))
            await accounts.ask(Fund(account="a", amount=Decimal(1), currency="EUR", operation="f"))
            sender = Sender(Pricing(), accounts, log, publisher, NAMES, clock=clock)
            yield Platform(ledger, records, books, log, accounts, transport, sender, nursery)
            handle.request_stop()
            nursery.cancel_scope.cancel()
    records.close()


def statuses(records: Records, request: str) -> list[str]:
    found = [records.message("a", f"msg_{request[:20]}_{index}") for index in range(len(TO))]
    return [message.status for message, _ in filter(None, found)]


OUTGOING = Outgoing(to=TO, sender="Acme", text="hello")


async def test_a_send_that_answered_503_is_failed_and_released_within_15_minutes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Ids unique to this test: consumers skip a message id they took before in this process.
    request = secrets.token_hex(12)
    async with platform() as p:
        with pytest.raises(Unavailable, match="retry with the same Idempotency-Key"):
            await p.sender.send("a", OUTGOING, request_id=request)
        answered = trio.current_time()
        # The records were written and the money held: the 503 came after.
        assert statuses(p.records, request) == ["queued"] * 3
        assert p.ledger.balance("a").held == Decimal("0.15")
        await p.nursery.start(
            functools.partial(
                run_reaper, p.books, p.log, p.accounts, unqueued_timeout=TIMEOUT, clock=clock
            )
        )
        # Not before a retry could still come: a client retrying within the window succeeds.
        await trio.sleep_until(answered + claim_after(TIMEOUT) - 1)
        await trio.testing.wait_all_tasks_blocked()
        assert statuses(p.records, request) == ["queued"] * 3
        assert p.ledger.balance("a").held == Decimal("0.15")
        # Within 15 minutes of the 503, every message failed and its money is back.
        await trio.sleep_until(answered + TIMEOUT)
        await trio.testing.wait_all_tasks_blocked()
        assert statuses(p.records, request) == ["failed"] * 3
        balance = p.ledger.balance("a")
        assert (balance.held, balance.balance) == (Decimal("0.00"), Decimal("1.00"))
        assert [row.state for row in p.records.outbox.rows_of(request)] == ["failed"]
        message, _ = p.records.message("a", f"msg_{request[:20]}_0") or (None, [])
        assert message is not None
        assert message.error == "not queued: the send answered 5xx and was not retried in time"
        # A retry now, whatever its body, is refused without a 500; nothing is sent.
        with pytest.raises(SendAbandoned):
            await p.sender.send("a", OUTGOING, request_id=request)
        with pytest.raises(KeyReused):
            await p.sender.send("a", Outgoing(to=TO[:1], sender="B", text="x"), request_id=request)
        assert p.transport.sent == []
        assert p.ledger.balance("a").held == Decimal("0.00")


async def test_a_retry_within_the_window_queues_them_and_the_reaper_leaves_them(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Ids unique to this test: consumers skip a message id they took before in this process.
    request = secrets.token_hex(12)
    async with platform() as p:
        with pytest.raises(Unavailable):
            await p.sender.send("a", OUTGOING, request_id=request)
        await p.nursery.start(
            functools.partial(
                run_reaper, p.books, p.log, p.accounts, unqueued_timeout=TIMEOUT, clock=clock
            )
        )
        await trio.sleep(claim_after(TIMEOUT) - 60)  # late, but in time
        p.transport.refusing = False
        sent = await p.sender.send("a", OUTGOING, request_id=request)
        assert [m.id for m in sent.messages] == [f"msg_{request[:20]}_{i}" for i in range(3)]
        assert p.transport.sent == [f"send-{request}-0"]
        await trio.sleep(2 * TIMEOUT)
        await trio.testing.wait_all_tasks_blocked()
        # Queued to the carrier: still held for it, never failed by the reaper.
        assert statuses(p.records, request) == ["queued"] * 3
        assert p.ledger.balance("a").held == Decimal("0.15")
        assert [row.state for row in p.records.outbox.rows_of(request)] == ["queued"]


async def test_what_a_carrier_settled_meanwhile_stays_as_it_is(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Ids unique to this test: consumers skip a message id they took before in this process.
    request = secrets.token_hex(12)
    # The publish was reported failed, yet the batch got through and a carrier sent one message:
    # giving the send up releases only the others.
    async with platform() as p:
        with pytest.raises(Unavailable):
            await p.sender.send("a", OUTGOING, request_id=request)
        first = f"msg_{request[:20]}_0"
        sent = Outcome(
            id=first, status="sent", carrier="sim", price=Decimal("0.05"), segments=1, prefix="+33"
        )
        settle = Outcomes(account="a", hold=f"hold-{request}", currency="EUR", items=(sent,))
        await p.accounts.tell("a", settle, message_id=f"carrier-{request}")
        await trio.sleep(TIMEOUT)
        given_up = await recover_once(
            p.log.outbox, p.accounts, older_than=claim_after(TIMEOUT), clock=clock
        )
        assert given_up == [(request, 0)]
        await trio.testing.wait_all_tasks_blocked()
        assert statuses(p.records, request) == ["sent", "failed", "failed"]
        balance = p.ledger.balance("a")
        assert (balance.held, balance.balance) == (Decimal("0.00"), Decimal("0.95"))
        assert p.ledger.applied(f"capture-{first}")
        assert not p.ledger.applied(f"release-{first}")
        # A second pass finds nothing to do.
        assert await recover_once(p.log.outbox, p.accounts, older_than=0, clock=clock) == []
