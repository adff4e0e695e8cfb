"""The account actor: the single writer of one account's money, one entity per account id.

    accounts = Entities("account", lambda account_id: AccountActor(account_id, context))
    run_partitioned(transport, names.layout, accounts, key_of=account_of, codec=context.codec)

Commands arrive on the account's partition queue (single active consumer across daemons, so one
daemon at a time owns an account, and one actor in it handles one command at a time):

- `OpenAccountCommand`, `Fund`, `HoldFunds` are requests: the answer is the ledger receipt, or
  the ledger's refusal (`InsufficientFunds`, `UnknownAccount`...) sent back as a remote failure;
- `Outcomes` settles a batch: captures for what carriers accepted, releases for what failed for
  good, applied in one ledger transaction; then the messages' statuses move and the customer's
  callbacks are queued.

Every ledger operation id is derived from the message it settles (`capture-<message id>`), so a
redelivered or retried command is applied once. A failure to reach the ledger
(`LedgerUnavailable`) makes an `Outcomes` wait in the retry tiers and try again later.
"""

from __future__ import annotations

import logging
from typing import Any

from actors import ConsumerActor, count, current_inbound
from broker import encode_failure, encode_reply
from rabbitry.billing import (
    BonusGrant,
    Capture,
    Hold,
    Money,
    OpenAccount,
    Operation,
    Release,
    SmsError,
    TopUp,
    kind_of,
)
from rabbitry.platform._callbacks import publish_callbacks, status_callbacks
from rabbitry.platform._context import Context, now
from rabbitry.platform._messages import (
    Fund,
    HoldFunds,
    OpenAccountCommand,
    Outcomes,
    ReleaseHold,
)
from rabbitry.platform._records import StatusChange

_log = logging.getLogger("rabbitry.platform.account")


def account_of(message: object) -> str:
    """The partition key of an account command."""
    account = getattr(message, "account", None)
    if not isinstance(account, str):
        raise TypeError(f"{type(message).__name__} carries no account id")
    return account


class AccountActor(ConsumerActor):
    """One account (see the module docstring)."""

    __slots__ = ("account", "context")

    def __init__(self, account: str, context: Context) -> None:
        self.account = account
        self.context = context

    async def handle(self, message: Any) -> Any:
        if isinstance(message, Outcomes):
            await self._settle(message)
            return None
        operation = self._operation(message)
        try:
            result: object = self.context.ledger.apply(operation)
        except Exception as error:  # noqa: BLE001 - a request is answered, never retried by tiers
            # The caller owns the retry of a request (it knows its deadline): a hold retried
            # from a tier after the caller gave up would hold money for nothing.
            if not isinstance(error, SmsError):
                _log.exception("account %s: %s failed", self.account, operation.id)
            count("account_refusals", kind_of(operation))
            await self._answer(encode_failure(self.context.codec, error, service="accounts"))
            return None
        count("account_operations", kind_of(operation))
        await self._answer(encode_reply(self.context.codec, result))
        return result

    def _operation(self, message: object) -> Operation:
        currency = self.context.currency
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
                id=message.operation, account=self.account, currency=message.currency or currency
            )
        raise TypeError(f"an account does not handle {type(message).__name__}")

    async def _answer(self, reply: Any) -> None:
        inbound = current_inbound()
        if inbound is not None and inbound.envelope.reply_to:
            await self.context.publisher.reply(inbound.delivery, reply)

    async def _settle(self, outcomes: Outcomes) -> None:
        operations: list[Operation] = []
        for item in outcomes.items:
            amount = Money.of(item.price, outcomes.currency)
            if item.status == "sent":
                operations.append(
                    Capture(
                        id=f"capture-{item.id}",
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
                        id=f"release-{item.id}",
                        account=self.account,
                        hold=outcomes.hold,
                        amount=amount,
                    )
                )
        results = self.context.ledger.apply_many(operations)
        for operation, result in zip(operations, results, strict=True):
            count("account_operations", kind_of(operation))
            if isinstance(result, SmsError):
                # A capture the hold cannot cover is a bug upstream, not a reason to lose the
                # rest of the batch: log it loudly (the message keeps its status).
                _log.error("account %s: %s refused: %s", self.account, operation.id, result)
        at = now()
        changes = [
            StatusChange(
                id=item.id,
                status=item.status,
                at=item.at or at,
                carrier=item.carrier,
                error=item.error,
            )
            for item in outcomes.items
        ]
        records = self.context.records
        records.remember_carrier_ids(
            (item.carrier, carrier_id, item.id)
            for item in outcomes.items
            if item.status == "sent"
            for carrier_id in item.carrier_ids
        )
        changed = records.apply_statuses(changes)
        await publish_callbacks(self.context, status_callbacks(changed))
