"""The account client: how the rest of the platform reaches the account actors, which alone
write the money.

    accounts = AccountClient(publisher, names)
    receipt = await accounts.ask(HoldFunds(account="acc_1", hold=..., amount=..., ...))
    await accounts.tell("acc_1", outcomes, message_id="settle-3f2a")
    await accounts.settled("acc_1", ["msg_1_0", "msg_1_1"])      # frozenset({"msg_1_0"})

Both go to the account's partition queue (`accounts.<i>`, the stable hash of its id), which one
daemon at a time consumes, one command at a time per account. `ask` is an RPC answered with the
ledger's receipt; the account's refusals come back as themselves (`ACCOUNT_ERRORS`:
`InsufficientFunds`, `UnknownAccount`...), except that a ledger the account could not reach, an
account that did not answer within `timeout` or a request that could not be published raise
`Unavailable` (the caller may retry with the same operation ids, which apply once). `tell` is a
confirmed publish, answered by nobody. `settled` asks which messages have their outcome in the
ledger; queued behind the commands before it, it sees every `Outcomes` already told.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from broker import CallTimeout, PublishError, RpcClient, TransportClosed
from rabbitry.billing import (
    CurrencyMismatch,
    InsufficientFunds,
    InvalidMoney,
    InvalidOperation,
    LedgerUnavailable,
    Receipt,
    UnknownAccount,
)
from rabbitry.gateway import Unavailable
from rabbitry.platform._layout import Names
from rabbitry.platform._messages import AccountRequest, Settled, SettledQuery
from rabbitry.platform._publisher import Publisher

RPC_TIMEOUT = 10.0
ACCOUNT_ERRORS = (
    InsufficientFunds,
    UnknownAccount,
    LedgerUnavailable,
    InvalidOperation,
    InvalidMoney,
    CurrencyMismatch,
)
"""The refusals of an account actor that come back from its RPC as themselves."""


@attrs.frozen
class AccountClient:
    """Asks and tells account actors through `publisher`'s transport (see the module docstring)."""

    publisher: Publisher
    names: Names
    timeout: float = RPC_TIMEOUT
    rpc: RpcClient = attrs.field(init=False)

    @rpc.default
    def _rpc(self) -> RpcClient:
        return RpcClient(self.publisher.transport, self.publisher.codec, errors=ACCOUNT_ERRORS)

    async def ask(self, command: AccountRequest) -> Receipt:
        """The receipt of `command`, applied by its account; raises its refusal, or Unavailable."""
        try:
            reply = await self.rpc.call(
                command,
                exchange=self.names.accounts,
                routing_key=self.names.layout.routing_key(command.account),
                timeout=self.timeout,
            )
        except LedgerUnavailable:
            raise Unavailable("the ledger is unavailable; retry with the same key") from None
        except (CallTimeout, PublishError) as error:
            raise Unavailable(f"the account did not answer in time ({error})") from None
        except TransportClosed:
            # The connection to RabbitMQ was lost during the call (its reply would come back on
            # the lost connection): the command may or may not have run, and it is safe to repeat.
            raise Unavailable(
                "the connection to the message broker was lost during the request; retry with "
                "the same key"
            ) from None
        if not isinstance(reply, Receipt):
            raise TypeError(f"an account answered {type(reply).__name__}, not a Receipt")
        return reply

    async def tell(self, account: str, message: object, *, message_id: str) -> None:
        """Publishes a command to `account`'s partition (its single writer), confirmed."""
        await self.publisher.publish(
            message,
            exchange=self.names.accounts,
            routing_key=self.names.layout.routing_key(account),
            message_id=message_id,
        )

    async def settled(self, account: str, messages: Iterable[str]) -> frozenset[str]:
        """Those of `messages` whose capture or release `account`'s ledger holds.

        Raises what the account raised (`LedgerUnavailable`...), CallTimeout or PublishError:
        the caller's failure policy retries them.
        """
        reply = await self.rpc.call(
            SettledQuery(account=account, messages=tuple(messages)),
            exchange=self.names.accounts,
            routing_key=self.names.layout.routing_key(account),
            timeout=self.timeout,
        )
        if not isinstance(reply, Settled):
            raise TypeError(f"an account answered {type(reply).__name__}, not Settled")
        return frozenset(reply.messages)
