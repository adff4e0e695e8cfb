"""Typed messages (msgspec Structs, attrs classes), the registry, and `open_actor`."""

from typing import Any

import attrs
import msgspec
import pytest
import trio
import trio.testing

from actors import (
    Actor,
    ActorError,
    ActorStopped,
    AlreadyRegistered,
    NotRegistered,
    Registry,
    open_actor,
)


class Deposit(msgspec.Struct, frozen=True, tag=True):
    amount: int


class GetBalance(msgspec.Struct, frozen=True, tag=True):
    pass


@attrs.frozen
class Withdraw:
    amount: int


class Account(Actor):
    def __init__(self) -> None:
        self.balance = 0

    async def handle(self, message: Any) -> Any:
        match message:
            case Deposit(amount=amount):
                self.balance += amount
            case Withdraw(amount=amount):
                self.balance -= amount
            case GetBalance():
                return self.balance
            case "boom":
                raise ValueError("boom")
            case _:
                raise TypeError(f"unknown message {message!r}")
        return None


async def test_msgspec_and_attrs_messages_reach_the_actor_unchanged() -> None:
    async with open_actor(Account(), name="account:7") as ref:
        await ref.tell(Deposit(amount=10))
        ref.tell_nowait(Withdraw(amount=3))
        assert await ref.ask(GetBalance()) == 7
        decoded = msgspec.json.decode(
            msgspec.json.encode(Deposit(amount=5)), type=Deposit | GetBalance
        )
        await ref.tell(decoded)
        assert await ref.ask(GetBalance()) == 12


def test_registry_registers_looks_up_and_unregisters() -> None:
    registry = Registry()
    first = _ref("ledger")
    registry.register("ledger", first)
    registry.register("billing", _ref("billing"))
    assert registry.lookup("ledger") is first
    assert registry.names() == ["billing", "ledger"]
    assert "ledger" in registry
    assert len(registry) == 2
    registry.unregister("ledger")
    assert registry.names() == ["billing"]


def test_registry_refuses_duplicates_and_unknown_names() -> None:
    registry = Registry()
    registry.register("ledger", _ref("ledger"))
    with pytest.raises(AlreadyRegistered, match=r"name 'ledger' is already registered"):
        registry.register("ledger", _ref("other"))
    with pytest.raises(NotRegistered, match=r"no actor is registered under 'ledgr'"):
        registry.lookup("ledgr")
    with pytest.raises(NotRegistered, match=r"cannot unregister 'ledgr'"):
        registry.unregister("ledgr")
    with pytest.raises(LookupError):
        registry.lookup("ledgr")
    with pytest.raises(ValueError, match="already registered"):
        registry.register("ledger", _ref("ledger"))
    assert issubclass(NotRegistered, ActorError)


def _ref(name: str) -> Any:
    from actors import Mailbox

    return Mailbox(name).ref


async def test_open_actor_stops_gracefully_and_closes_on_exit() -> None:
    actor = Account()
    async with open_actor(actor, name="graceful") as ref:
        for _ in range(50):
            ref.tell_nowait(Deposit(amount=1))
    assert actor.balance == 50  # what was queued at exit was handled
    with pytest.raises(ActorStopped):
        await ref.tell(Deposit(amount=1))


async def test_open_actor_raises_the_crash_out_of_the_block_unwrapped() -> None:
    reached_end = False

    async def block() -> None:
        nonlocal reached_end
        async with open_actor(Account(), name="crashy") as ref:
            await ref.tell("boom")
            await trio.sleep_forever()
            reached_end = True

    with pytest.raises(ValueError, match="boom"):
        await block()
    assert not reached_end


async def test_open_actor_raises_the_block_error_unwrapped() -> None:
    with pytest.raises(KeyError, match="mine"):
        async with open_actor(Account(), name="innocent"):
            raise KeyError("mine")


async def test_open_actor_raises_the_on_start_error_unwrapped() -> None:
    class BadStart(Account):
        async def on_start(self) -> None:
            raise OSError("no database")

    entered = False
    with pytest.raises(OSError, match="no database"):
        async with open_actor(BadStart(), name="unborn"):
            entered = True
    assert not entered


async def test_open_actor_obeys_an_outer_cancellation() -> None:
    with trio.CancelScope() as scope:
        async with open_actor(Account(), name="cancelled"):
            scope.cancel()
            await trio.sleep_forever()
    assert scope.cancelled_caught
