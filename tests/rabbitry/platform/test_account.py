"""The account actor behind its partition queues, reached through the AccountClient: receipts,
refusals that come back as themselves, and which outcomes are settled (what a carrier asks
before it submits a redelivered batch again, instead of reading the ledger itself)."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import msgspec
import pytest
import trio

from actors import Entities, run_partitioned
from broker import open_memory_transport
from rabbitry.billing import (
    AsyncLedger,
    InsufficientFunds,
    InvalidMoney,
    Ledger,
    MemoryStore,
    Receipt,
    UnknownAccount,
)
from rabbitry.gateway import Unavailable
from rabbitry.platform import (
    AccountActor,
    AccountClient,
    Fund,
    HoldFunds,
    Names,
    OpenAccountCommand,
    Outcome,
    Outcomes,
    Publisher,
    Records,
    SendBatch,
    account_of,
    platform_codec,
)
from rabbitry.platform._carrier_marks import unknown_delivered, unknown_failure, unknown_outcome

from .conftest import InlineThreads, inline

NAMES = Names()


@asynccontextmanager
async def account_actors(ledger: Ledger) -> AsyncIterator[AccountClient]:
    """The account actors of `ledger` consuming the partitions of a memory broker."""
    records = Records.open(":memory:")
    async with open_memory_transport() as transport:
        publisher = Publisher(transport, platform_codec(), NAMES.exchange)

        def account(account_id: str) -> AccountActor:
            return AccountActor(
                account_id,
                ledger=AsyncLedger(ledger, InlineThreads()),  # the tests run on a MockClock
                records=inline(records),
                publisher=publisher,
                names=NAMES,
                currency="EUR",
            )

        await transport.declare(NAMES.layout.topology())
        async with trio.open_nursery() as nursery:
            accounts = await nursery.start(Entities("accounts", account).run)
            handle = await nursery.start(
                lambda task_status: run_partitioned(
                    transport,
                    NAMES.layout,
                    accounts,
                    account_of,
                    codec=publisher.codec,
                    declare=False,
                    task_status=task_status,
                )
            )
            yield AccountClient(publisher, NAMES)
            handle.request_stop()
            nursery.cancel_scope.cancel()
    records.close()


def outcome(message: str, status: Any) -> Outcome:
    return Outcome(
        id=message, status=status, carrier="sim", price=Decimal("0.05"), segments=1, prefix="+33"
    )


async def test_receipts_and_refusals_come_back_typed(autojump_clock: Any) -> None:
    async with account_actors(Ledger(MemoryStore())) as accounts:
        with trio.fail_after(10):
            opened = await accounts.ask(
                OpenAccountCommand(account="acc_1", currency="EUR", operation="open-acc_1")
            )
            assert isinstance(opened, Receipt)
            funded = await accounts.ask(
                Fund(account="acc_1", amount=Decimal("0.10"), currency="EUR", operation="f1")
            )
            assert funded.balance.balance == Decimal("0.10")
            with pytest.raises(InsufficientFunds, match=r"'acc_1' has 0\.10 EUR available"):
                await accounts.ask(
                    HoldFunds(
                        account="acc_1",
                        hold="h1",
                        amount=Decimal("0.20"),
                        currency="EUR",
                        operation="h1",
                    )
                )
            with pytest.raises(UnknownAccount):
                await accounts.ask(
                    Fund(account="acc_2", amount=Decimal("1"), currency="EUR", operation="f2")
                )


async def test_settled_names_the_outcomes_told_before_the_question(autojump_clock: Any) -> None:
    ledger = Ledger(MemoryStore())
    async with account_actors(ledger) as accounts:
        with trio.fail_after(10):
            await accounts.ask(OpenAccountCommand(account="a", currency="EUR", operation="o"))
            await accounts.ask(Fund(account="a", amount=Decimal(1), currency="EUR", operation="f"))
            hold = HoldFunds(
                account="a", hold="h", amount=Decimal("0.15"), currency="EUR", operation="h"
            )
            await accounts.ask(hold)
            assert await accounts.settled("a", ["m1", "m2", "m3"]) == frozenset()
            settle = Outcomes(
                account="a",
                hold="h",
                currency="EUR",
                items=(outcome("m1", "sent"), outcome("m2", "failed")),
            )
            # Told, not awaited by the account: the question goes behind it in the same queue.
            await accounts.tell("a", settle, message_id="settle-1")
            assert await accounts.settled("a", ["m1", "m2", "m3"]) == frozenset({"m1", "m2"})
    assert ledger.applied("capture-m1")
    assert ledger.applied("release-m2")
    assert ledger.balance("a").held == Decimal("0.05")  # m3's part, not settled yet


@pytest.mark.parametrize("amount", ["0.0000001", "99999999999999999999999", "1E+30", "NaN"])
async def test_an_amount_that_is_no_money_is_answered_never_a_crash(
    amount: str, autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Sent to the account actor directly, past any gateway check: each request is answered
    # with its refusal at once (it used to crash the actor three times, then park the message).
    ledger = Ledger(MemoryStore())
    bad = Decimal(amount)
    async with account_actors(ledger) as accounts:
        with trio.fail_after(5):
            await accounts.ask(OpenAccountCommand(account="a", currency="EUR", operation="o"))
            for command in (
                Fund(account="a", amount=bad, currency="EUR", operation="f1"),
                Fund(account="a", amount=bad, currency="EUR", operation="b1", bonus=True),
                HoldFunds(account="a", hold="h1", amount=bad, currency="EUR", operation="h1"),
            ):
                with pytest.raises(InvalidMoney, match=r"^an amount (has more|is too large|must)"):
                    await accounts.ask(command)
            funded = await accounts.ask(
                Fund(account="a", amount=Decimal("1"), currency="EUR", operation="f2")
            )
            # An outcome priced with such an amount is left out (logged), the others settle.
            await accounts.ask(
                HoldFunds(
                    account="a", hold="h", amount=Decimal("0.05"), currency="EUR", operation="h"
                )
            )
            bad_outcome = msgspec.structs.replace(outcome("m1", "sent"), price=bad)
            settle = Outcomes(
                account="a", hold="h", currency="EUR", items=(bad_outcome, outcome("m2", "sent"))
            )
            await accounts.tell("a", settle, message_id=f"settle-{amount}")  # unique
            assert await accounts.settled("a", ["m1", "m2"]) == frozenset({"m2"})
    assert funded.balance.balance == Decimal("1.00")
    crashes = [record for record in caplog.records if "crashed" in record.getMessage()]
    assert crashes == []
    assert ledger.balance("a").held == Decimal("0.00")


async def test_a_call_cut_off_by_a_lost_connection_is_unavailable_never_a_crash(
    autojump_clock: Any,
) -> None:
    """The broker connection goes while the account's reply is awaited: the reply cannot come
    back, so the caller is told to retry with the same key (503), not given an internal error."""
    async with open_memory_transport() as transport:
        await transport.declare(NAMES.layout.topology())
        client = AccountClient(Publisher(transport, platform_codec(), NAMES.exchange), NAMES)
        queue = NAMES.layout.queue(NAMES.layout.partition("acc_1"))
        # `silent` takes the command and never answers.
        async with transport.open_consumer(queue) as silent, trio.open_nursery() as nursery:

            async def cut_when_taken() -> None:
                await silent.__anext__()
                await transport.aclose()

            nursery.start_soon(cut_when_taken)
            with pytest.raises(Unavailable, match="connection to the message broker was lost"):
                await client.ask(
                    Fund(account="acc_1", amount=Decimal("1"), currency="EUR", operation="f")
                )


async def test_an_unknown_outcome_is_settled_once_by_its_report_or_by_the_reaper(
    autojump_clock: Any,
) -> None:
    """A message whose outcome is unknown keeps its money held; its delivery report (a capture)
    and the reaper giving up (a release) may both be told, in either order: the first wins,
    the other changes nothing."""
    ledger = Ledger(MemoryStore())
    batch = SendBatch(account="a", hold="h", currency="EUR", items=())
    marks = {
        message: unknown_outcome(batch, outcome(message, "failed")) for message in ("m1", "m2")
    }
    async with account_actors(ledger) as accounts:
        with trio.fail_after(10):
            await accounts.ask(OpenAccountCommand(account="a", currency="EUR", operation="o"))
            await accounts.ask(Fund(account="a", amount=Decimal(1), currency="EUR", operation="f"))
            hold = HoldFunds(
                account="a", hold="h", amount=Decimal("0.10"), currency="EUR", operation="h"
            )
            await accounts.ask(hold)
            # m1: its report came first, then the reaper; m2: the reaper, then a late report.
            await accounts.tell("a", unknown_delivered(marks["m1"], 1.0), message_id="r-m1")
            await accounts.tell("a", unknown_failure(marks["m2"]), message_id="u-m2")
            await accounts.tell("a", unknown_failure(marks["m1"]), message_id="u-m1")
            await accounts.tell("a", unknown_delivered(marks["m2"], 2.0), message_id="r-m2")
            assert await accounts.settled("a", ["m1", "m2"]) == frozenset({"m1", "m2"})
    assert ledger.applied_among(["capture-m1", "release-m1", "capture-m2", "release-m2"]) == {
        "capture-m1",
        "release-m2",
    }
    balance = ledger.balance("a")
    assert (balance.balance, balance.held) == (Decimal("0.95"), Decimal("0.00"))
