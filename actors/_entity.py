"""The record of one entity inside an `Entities` host: small, because there may be millions.

An idle entity is this record (seven slots) plus its actor object, no task and no deque: the first
pending message waits in `head`, and only a second one creates the `rest` deque, which is dropped
again once it is empty. So activating an entity with one message allocates no deque at all.
"""

from collections import deque
from typing import Any, Final

from actors._actor import Actor

# Not queued, not held by a worker.
IDLE: Final = 0
# In the host's run queue (at most once).
SCHEDULED: Final = 1
# Held by one worker, which handles its messages one at a time.
HELD: Final = 2


class _Nothing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NOTHING"


# `head` when nothing is pending (a message may be None, so None cannot mark it).
NOTHING: Final = _Nothing()


class Entity:
    """One entity: its id, its actor while active, its pending messages, its scheduling state.

    Invariant: `head is NOTHING` implies `rest` is None or empty.
    """

    __slots__ = ("actor", "head", "id", "last_active", "passivate", "rest", "state")

    def __init__(self, entity_id: str) -> None:
        self.id = entity_id
        self.actor: Actor | None = None
        self.head: Any = NOTHING
        self.rest: deque[Any] | None = None
        self.state: int = IDLE
        self.passivate = False
        self.last_active = 0.0

    def push(self, message: Any) -> None:
        if self.head is NOTHING:
            self.head = message
            return
        rest = self.rest
        if rest is None:
            rest = self.rest = deque()
        rest.append(message)

    def pop(self) -> Any:
        """Takes the oldest pending message; call only when `head is not NOTHING`."""
        message = self.head
        rest = self.rest
        if rest:
            self.head = rest.popleft()
        else:
            self.head = NOTHING
            self.rest = None
        return message

    def pending(self) -> int:
        if self.head is NOTHING:
            return 0
        rest = self.rest
        return 1 + len(rest) if rest else 1

    def __repr__(self) -> str:
        return f"<Entity {self.id!r} pending={self.pending()} state={self.state}>"
