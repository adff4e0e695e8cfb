"""A runnable supervision tree: `python examples/hello_tree.py` (inside .venv)."""

from typing import Any

import attrs
import trio

from actors import Actor, ActorCrashed
from supervisor import Backoff, Strategy, actor, open_supervisor, render, supervisor


@attrs.frozen
class Charge:
    account: str
    cents: int


class Ledger(Actor):
    """Keeps totals; answers every `Charge` with the new total of that account."""

    def __init__(self) -> None:
        self.totals: dict[str, int] = {}

    async def handle(self, message: Any) -> int:
        charge: Charge = message
        if charge.cents < 0:
            raise ValueError(f"a charge must be >= 0 cents (got {charge.cents})")
        total = self.totals.get(charge.account, 0) + charge.cents
        self.totals[charge.account] = total
        return total


async def main() -> None:
    ledger = actor("ledger", Ledger, backoff=Backoff.exponential(min=0.1, max=2.0))
    tree = supervisor("root", Strategy.ONE_FOR_ONE, [ledger], intensity=3, period=5.0)
    async with open_supervisor(tree) as root:
        print(await ledger.ref.ask(Charge("42", 500)))  # 500
        try:
            await ledger.ref.ask(Charge("42", -1))  # crashes the ledger: the ask fails promptly
        except ActorCrashed as error:
            print(type(error).__name__)  # ActorCrashed
        print(await ledger.ref.ask(Charge("42", 250)))  # 250: a fresh incarnation, same ref
        print(render(root.snapshot()))  # ledger: restarts=1, last: ValueError: a charge must...
    # Leaving the block stops the tree gracefully, in reverse start order.


if __name__ == "__main__":
    trio.run(main)
