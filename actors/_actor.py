"""The actor: the user's behaviour, run one message at a time by an incarnation.

    class Counter(Actor):
        def __init__(self) -> None:
            self.count = 0

        async def handle(self, message: Any) -> Any:
            self.count += 1
            return self.count      # answers an ask; a tell ignores it

`ref` is set by the runtime before `on_start`. `on_stop` runs after a graceful stop and, best effort
(its own error is logged, not raised), after a crash. An actor object lives for one incarnation: a
restart builds a new one, while its mailbox and `ActorRef` stay.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from actors._ref import ActorRef


class Actor:
    """Subclass and override `handle` (and `on_start` / `on_stop` when needed).

    The base class has `__slots__ = ("ref",)`, so a subclass that declares `__slots__` itself is
    as small as its own fields (it matters for hundreds of thousands of entities).
    """

    __slots__ = ("ref",)

    ref: "ActorRef"

    async def on_start(self) -> None:
        """Runs before the first message of an incarnation; raising here fails the start."""

    async def handle(self, message: Any) -> Any:
        """Handles one message; the return value answers an ask. Raising crashes the actor."""
        raise NotImplementedError(
            f"{type(self).__name__} got {message!r} but does not override handle();"
            " define `async def handle(self, message)` on it"
        )

    async def on_stop(self) -> None:
        """Runs after the last message of an incarnation (graceful stop, passivation, crash)."""
