"""The account actor: the single writer of one account's money, one entity per account id.

    accounts = Entities("account", lambda account_id: AccountActor(
        account_id, ledger=ledger, records=records, publisher=publisher, names=names,
        currency="EUR"))
    run_partitioned(transport, names.layout, accounts, key_of=account_of, codec=codec)

Commands arrive on the account's partition queue (single active consumer across daemons, so one
daemon at a time owns an account, and one actor in it handles one command at a time):

- `OpenAccountCommand`, `Fund`, `HoldFunds` are requests: the answer is the ledger receipt, or
  the ledger's refusal (`InsufficientFunds`, `UnknownAccount`...) sent back as a remote failure;
- `SettledQuery` is a request too: which of its messages have their capture or release in the
  ledger (a carrier asks before it submits a redelivered batch again);
- `Outcomes` settles a batch: captures for what carriers accepted, releases for what failed for
  good, applied in one ledger transaction while the messages' statuses move in the records (the
  two stores written at once); then the customer's callbacks are queued.

Fences: each write carries the fence its partition's subscription took (`partition_fences`, the
`on_owner` of the partitions); a write refused with `FencedOut` (another daemon took the
partition over) becomes `actors.OwnershipLost`: the command is neither answered nor acked here,
the new owner handles it.

Every ledger operation id is derived from the message it settles (`capture-<message id>`), so a
redelivered or retried command is applied once. A failure to reach the ledger
(`LedgerUnavailable`) makes an `Outcomes` wait in the retry tiers and try again later.

The actor is given the ledger (it alone writes the account's money), what settling writes of
the records (statuses and carrier ids), and a publisher for its answers and callbacks.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

import trio

from actors import ConsumerActor, OwnershipLost, count, current_inbound, inbound_or_none
from broker import Envelope, encode_failure, encode_reply
from rabbitry.billing import (
    BonusGrant,
    Capture,
    Fence,
    FencedOut,
    Hold,
    Money,
    OpenAccount,
    Operation,
    Receipt,
    Release,
    SmsError,
    TopUp,
    UnknownHold,
    kind_of,
)
from rabbitry.platform._callbacks import publish_callbacks, status_callbacks
from rabbitry.platform._context import now
from rabbitry.platform._layout import Names
from rabbitry.platform._messages import (
    Fund,
    HoldFunds,
    OpenAccountCommand,
    Outcome,
    Outcomes,
    ReleaseHold,
    Settled,
    SettledQuery,
)
from rabbitry.platform._publisher import Publisher
from rabbitry.platform._records import Changed, StatusChange

_log = logging.getLogger("rabbitry.platform.account")


class AccountLedger(Protocol):
    """What an account actor does with the ledger: apply its operations, see what is applied."""

    async def apply(self, operation: Operation, fence: Fence | None = None) -> Receipt: ...

    async def apply_many(
        self, operations: Iterable[Operation], fence: Fence | None = None
    ) -> list[Receipt | SmsError]: ...

    async def applied_among(self, operation_ids: Iterable[str]) -> set[str]: ...


class FenceLedger(Protocol):
    """What taking a partition's fence needs of the ledger."""

    async def take_fence(self, layout: str, partition: int, owner: str) -> Fence: ...


def partition_fences(
    ledger: FenceLedger, layout: str, owner: str
) -> Callable[[int], Awaitable[Fence]]:
    """The `on_owner` of the account partitions (`actors.run_partitioned`): a subscription that
    becomes a partition's owner takes its fence in the ledger, and the account actors write with
    it, so that a stale owner's writes fail (`FencedOut`) once another daemon took over."""

    async def take(partition: int) -> Fence:
        fence = await ledger.take_fence(layout, partition, owner)
        _log.info("partition %d of %r taken at epoch %d", partition, layout, fence.epoch)
        return fence

    return take


def _fence() -> Fence | None:
    """The fence of the partition subscription that delivered the command being handled."""
    inbound = inbound_or_none()
    owner = None if inbound is None else inbound.owner
    return owner if isinstance(owner, Fence) else None


class SettledRecords(Protocol):
    """What settling writes of the records: carrier ids, then statuses."""

    async def remember_carrier_ids(self, rows: Iterable[tuple[str, str, str]]) -> None: ...

    async def apply_statuses(self, changes: Iterable[StatusChange]) -> list[Changed]: ...


def account_of(message: object) -> str:
    """The partition key of an account command."""
    account = getattr(message, "account", None)
    if not isinstance(account, str):
        raise TypeError(f"{type(message).__name__} carries no account id")
    return account


def _kind(message: object) -> str:
    """The ledger operation kind a request asks for (the refusal counter's label)."""
    if isinstance(message, Fund):
        return "bonus_grant" if message.bonus else "top_up"
    kinds: dict[type, str] = {
        HoldFunds: "hold",
        ReleaseHold: "release",
        OpenAccountCommand: "open_account",
    }
    return kinds.get(type(message), type(message).__name__)


def _settling_ids(messages: Iterable[str]) -> list[str]:
    """The ledger operations that would settle each of `messages` (capture and release)."""
    return [id_ for message in messages for id_ in (capture_id(message), release_id(message))]


def capture_id(message: str) -> str:
    """The ledger operation that captures `message`'s price."""
    return f"capture-{message}"


def release_id(message: str) -> str:
    """The ledger operation that gives `message`'s price back."""
    return f"release-{message}"


class AccountActor(ConsumerActor):
    """One account (see the module docstring)."""

    __slots__ = ("account", "currency", "ledger", "names", "publisher", "records")

    def __init__(
        self,
        account: str,
        *,
        ledger: AccountLedger,
        records: SettledRecords,
        publisher: Publisher,
        names: Names,
        currency: str,
    ) -> None:
        self.account = account
        self.ledger = ledger
        self.records = records
        self.publisher = publisher
        self.names = names
        self.currency = currency

    async def handle(self, message: Any) -> Any:
        try:
            return await self._handle(message)
        except FencedOut as error:
            # Another daemon owns the partition now: nothing was written; it handles the command
            # (the broker redelivers it there), and this one neither answers nor acks it.
            _log.warning("account %s: %s", self.account, error)
            count("account_fenced_out", _kind(message))
            raise OwnershipLost(str(error)) from error

    async def _handle(self, message: Any) -> Any:
        if isinstance(message, Outcomes):
            await self._settle(message)
            return None
        if isinstance(message, SettledQuery):
            return await self._answer_settled(message)
        try:
            # The conversion too (an amount that is no money, say 1E-7 or 1E+23, raises
            # InvalidMoney): whatever the message carries, a request is answered, never a crash.
            operation = self._operation(message)
            result: object = await self.ledger.apply(operation, _fence())
        except FencedOut:
            raise
        except Exception as error:  # noqa: BLE001 - a request is answered, never retried by tiers
            # The caller owns the retry of a request (it knows its deadline): a hold retried
            # from a tier after the caller gave up would hold money for nothing.
            count("account_refusals", _kind(message))
            await self._refuse(error, getattr(message, "operation", type(message).__name__))
            return None
        count("account_operations", kind_of(operation))
        await self._answer(encode_reply(self.publisher.codec, result))
        return result

    def _operation(self, message: object) -> Operation:
        if isinstance(message, HoldFunds):
            amount = Money.of(message.amount, message.currency)
            return Hold(
                id=message.operation, account=self.account, hold=message.hold, amount=amount
            )
        if isinstance(message, Fund):
            amount = Money.of(message.amount, message.currency)
            kind = BonusGrant if message.bonus else TopUp
            return kind(
                id=message.operation,
                account=self.account,
                amount=amount,
                reference=message.reference,
            )
        if isinstance(message, ReleaseHold):
            return Release(id=message.operation, account=self.account, hold=message.hold)
        if isinstance(message, OpenAccountCommand):
            return OpenAccount(
                id=message.operation,
                account=self.account,
                currency=message.currency or self.currency,
            )
        raise TypeError(f"an account does not handle {type(message).__name__}")

    async def _answer_settled(self, query: SettledQuery) -> Settled | None:
        try:
            applied = await self.ledger.applied_among(_settling_ids(query.messages))
            settled = Settled(
                messages=tuple(
                    message
                    for message in query.messages
                    if capture_id(message) in applied or release_id(message) in applied
                )
            )
        except Exception as error:  # noqa: BLE001 - answered: the asking carrier retries
            await self._refuse(error, "settled query")
            return None
        await self._answer(encode_reply(self.publisher.codec, settled))
        return settled

    async def _refuse(self, error: Exception, what: str) -> None:
        if not isinstance(error, SmsError):
            _log.exception("account %s: %s failed", self.account, what)
        await self._answer(encode_failure(self.publisher.codec, error, service="accounts"))

    async def _answer(self, reply: Envelope) -> None:
        inbound = current_inbound()
        if inbound.envelope.reply_to:
            await self.publisher.reply(inbound.delivery, reply)

    async def _settle(self, outcomes: Outcomes) -> None:
        items = outcomes.items
        if outcomes.unless_settled:
            # A send given up (rabbitry.platform._outbox): what a carrier settled meanwhile
            # stays as it is. The check and the releases are this actor's alone, one command
            # at a time, so no carrier outcome can come in between.
            applied = await self.ledger.applied_among(_settling_ids(item.id for item in items))
            items = tuple(
                item
                for item in items
                if capture_id(item.id) not in applied and release_id(item.id) not in applied
            )
        operations: list[Operation] = []
        settled: list[Outcome] = []
        for item in items:
            try:
                amount = Money.of(item.price, outcomes.currency)
            except SmsError as error:
                # No carrier prices a message: a bad amount here is a bug upstream. Logged
                # loudly; the other items still settle, and this one keeps its status.
                _log.error("account %s: outcome of %s refused: %s", self.account, item.id, error)
                continue
            settled.append(item)
            if item.status == "sent":
                operations.append(
                    Capture(
                        id=capture_id(item.id),
                        account=self.account,
                        hold=outcomes.hold,
                        amount=amount,
                        message=item.id,
                        prefix=item.prefix,
                        segments=item.segments,
                    )
                )
            else:
                operations.append(
                    Release(
                        id=release_id(item.id),
                        account=self.account,
                        hold=outcomes.hold,
                        amount=amount,
                    )
                )
        at = now()
        changes = [
            StatusChange(
                id=item.id,
                status=item.status,
                at=item.at or at,
                carrier=item.carrier,
                error=item.error,
            )
            for item in settled
        ]
        changed: list[Changed] = []

        async def record() -> None:
            await self.records.remember_carrier_ids(
                (item.carrier, carrier_id, item.id)
                for item in settled
                if item.status == "sent"
                for carrier_id in item.carrier_ids
            )
            changed.extend(await self.records.apply_statuses(changes))

        # The records and the ledger at once (each in its store thread): the statuses follow
        # the carriers' outcomes whatever the ledger answers, and both are written again,
        # harmlessly, when the command comes back (a failure, or another owner after a fence).
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(record)
                results = await self.ledger.apply_many(operations, _fence())
        except BaseExceptionGroup as group:
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
        for operation, result in zip(operations, results, strict=True):
            count("account_operations", kind_of(operation))
            if isinstance(result, UnknownHold) and outcomes.unless_settled:
                # A send given up before its hold was placed: there is nothing to give back.
                continue
            if isinstance(result, SmsError):
                # A capture the hold cannot cover is a bug upstream, not a reason to lose the
                # rest of the batch: log it loudly.
                _log.error("account %s: %s refused: %s", self.account, operation.id, result)
        await publish_callbacks(self.publisher, self.names, status_callbacks(changed))
