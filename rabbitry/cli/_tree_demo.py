"""`rabbitry demo`: a small tree whose actors crash and come back, printed as it lives.

The tree (what each part shows):

    demo                 one_for_one, intensity 20 in 5 s
      ledger             a steady actor: never crashes, answers every ask
      carriers           one_for_one: a crash restarts only the carrier that crashed
        carrier:flaky    crashes on every 4th message; exponential backoff 0.2 s .. 1.6 s
        carrier:steady   keeps answering while its sibling backs off
      senders            a pool of 3 workers; a message marked "poison" crashes its worker
      account            per-id entities, activated on first message, passivated when idle

A traffic task sends to all of them; the tree is printed every `interval` seconds.
"""

import contextlib
import logging
import math
import sys
from typing import Any

import attrs
import trio

from actors import Actor, ActorError
from supervisor import (
    Backoff,
    Strategy,
    SupervisorSpec,
    actor,
    entities,
    open_supervisor,
    pool,
    render,
    supervisor,
)


@attrs.frozen
class Submit:
    """Hand one message to a carrier or a sender."""

    number: int
    poison: bool = False


class CarrierDownError(RuntimeError):
    """The demo carrier's simulated failure."""


class Ledger(Actor):
    def __init__(self) -> None:
        self.entries = 0

    async def handle(self, message: Any) -> int:
        self.entries += 1
        return self.entries


class FlakyCarrier(Actor):
    async def handle(self, message: Any) -> str:
        if isinstance(message, Submit) and message.number % 4 == 0:
            raise CarrierDownError(f"connection reset while submitting message {message.number}")
        return "accepted"


class SteadyCarrier(Actor):
    async def handle(self, message: Any) -> str:
        return "accepted"


class Sender(Actor):
    async def handle(self, message: Any) -> None:
        if isinstance(message, Submit) and message.poison:
            raise ValueError(f"message {message.number} cannot be encoded")


class Account(Actor):
    def __init__(self, account_id: str) -> None:
        self.account_id = account_id
        self.sent = 0

    async def handle(self, message: Any) -> int:
        self.sent += 1
        return self.sent


def demo_tree() -> tuple[SupervisorSpec, dict[str, Any]]:
    """The demo's tree, and the children the traffic talks to."""
    ledger = actor("ledger", Ledger)
    flaky = actor(
        "carrier:flaky",
        FlakyCarrier,
        backoff=Backoff.exponential(min=0.2, max=1.6, multiplier=2.0, jitter=0.1, reset_after=3),
    )
    steady = actor("carrier:steady", SteadyCarrier)
    senders = pool("senders", Sender, size=3, intensity=10, period=5.0)
    accounts = entities("account", Account, idle_timeout=1.0)
    carriers = supervisor("carriers", Strategy.ONE_FOR_ONE, [flaky, steady], intensity=10)
    tree = SupervisorSpec(
        "demo", Strategy.ONE_FOR_ONE, (ledger, carriers, senders, accounts), intensity=20
    )
    return tree, {
        "ledger": ledger,
        "flaky": flaky,
        "steady": steady,
        "senders": senders,
        "accounts": accounts,
    }


async def traffic(children: dict[str, Any], period: float) -> None:
    """Send a steady trickle of work to every part of the tree."""
    for number in range(1, 1_000_000):
        await children["ledger"].ref.ask(Submit(number))
        await children["steady"].ref.ask(Submit(number))
        with contextlib.suppress(ActorError, TimeoutError):
            # Crashed on this one, or backing off: the caller moves on.
            await children["flaky"].ref.ask(Submit(number), timeout=0.05)
        await children["senders"].ref.tell(Submit(number, poison=number % 7 == 0))
        await children["accounts"].ref(str(number % 5)).tell(Submit(number))
        await trio.sleep(period)


class _NoTracebacks(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = None
        record.exc_text = None
        return True


def log_to_stdout() -> None:
    """Show the tree's lifecycle log (crashes, restarts) between the printed trees, briefly."""
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(_NoTracebacks())
    handler.setFormatter(logging.Formatter("  log  %(levelname)-7s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)


async def run_demo(seconds: float, interval: float) -> int:
    """Run the demo for `seconds`, printing the tree every `interval`; returns the exit status."""
    tree, children = demo_tree()
    started = trio.current_time()
    async with open_supervisor(tree) as root, trio.open_nursery() as nursery:
        nursery.start_soon(traffic, children, 0.05)
        for _ in range(max(1, math.ceil(seconds / interval))):
            await trio.sleep(interval)
            print(f"\n== tree at t={trio.current_time() - started:.1f}s", flush=True)
            print(render(root.snapshot()), flush=True)
        nursery.cancel_scope.cancel()
    print("\n== stopped gracefully: every child stopped in reverse start order", flush=True)
    return 0
