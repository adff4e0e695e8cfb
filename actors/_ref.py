"""The actor reference: the cheap, hashable handle through which anyone talks to an actor.

    await ref.tell(Deposit(amount=5))            # waits while the mailbox is full
    ref.tell_nowait(Deposit(amount=5))           # raises MailboxFull instead of waiting
    balance = await ref.ask(GetBalance(), timeout=2.0)

A reference points at an endpoint (a `Mailbox`, or one entity of an `Entities` host), never at an
actor object, so it stays valid across restarts of the actor behind it. Two references are equal
when they point at the same endpoint and address.
"""

from typing import Any, Protocol

from actors._settings import DEFAULT_ASK_TIMEOUT


class Endpoint(Protocol):
    """What a reference delivers through; `address` tells entities apart (None for a mailbox)."""

    async def _tell(self, address: str | None, message: Any) -> None: ...

    def _tell_nowait(self, address: str | None, message: Any) -> None: ...

    async def _ask(
        self,
        address: str | None,
        message: Any,
        timeout: float,  # noqa: ASYNC109 - the deadline is part of the ask
    ) -> Any: ...

    def _depth_of(self, address: str | None) -> int: ...

    def _name_of(self, address: str | None) -> str: ...


class ActorRef:
    """The address of an actor: `tell`, `tell_nowait`, `ask` and `depth`.

    Raises (from its methods): `ActorStopped` when the target is closed, `MailboxFull` from
    `tell_nowait`, `AskTimeout`, `ActorCrashed` and `ActorStopped` from `ask`.
    """

    __slots__ = ("_address", "_endpoint")

    def __init__(self, endpoint: Endpoint, address: str | None = None) -> None:
        self._endpoint = endpoint
        self._address = address

    @property
    def name(self) -> str:
        """The actor's name, e.g. `"ledger"` or, for an entity, `"account:42"`."""
        return self._endpoint._name_of(self._address)

    @property
    def depth(self) -> int:
        """How many messages wait in the actor's mailbox."""
        return self._endpoint._depth_of(self._address)

    async def tell(self, message: Any) -> None:
        """Queues `message`; waits while the mailbox is full, never drops it.

        It is a checkpoint only when it must wait: a tell into a mailbox with room checks for
        cancellation (`checkpoint_if_cancelled`) but does not yield, so a producer fills the
        mailbox in one scheduler step and the actor drains it in the next. The capacity bounds
        how long a producer runs without yielding.
        """
        await self._endpoint._tell(self._address, message)

    def tell_nowait(self, message: Any) -> None:
        """Queues `message` now, or raises `MailboxFull` when the mailbox is full."""
        self._endpoint._tell_nowait(self._address, message)

    async def ask(
        self,
        message: Any,
        *,
        timeout: float = DEFAULT_ASK_TIMEOUT,  # noqa: ASYNC109 - a deadline per ask is the contract (like Akka's ask)
    ) -> Any:
        """Sends `message` and returns the actor's reply (what its `handle` returned).

        The deadline covers waiting for room in the mailbox too. Raises `AskTimeout` when no
        reply came within `timeout` seconds, `ActorCrashed` when the actor crashed handling this
        message, `ActorStopped` when it was stopped or closed before answering.
        """
        return await self._endpoint._ask(self._address, message, timeout)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ActorRef):
            return NotImplemented
        return self._endpoint is other._endpoint and self._address == other._address

    def __hash__(self) -> int:
        return hash((id(self._endpoint), self._address))

    def __repr__(self) -> str:
        return f"<ActorRef {self.name!r}>"
