"""The registry: names to actor references, for actors that find each other by name.

    registry = Registry()
    registry.register("ledger", ref)
    await registry.lookup("ledger").tell(Deposit(amount=5))

Raises `AlreadyRegistered` for a name registered twice and `NotRegistered` for an unknown name.
"""

from actors._errors import AlreadyRegistered, NotRegistered
from actors._ref import ActorRef


class Registry:
    """A plain mapping of names to refs; refs stay valid across restarts, so entries do too."""

    __slots__ = ("_refs",)

    def __init__(self) -> None:
        self._refs: dict[str, ActorRef] = {}

    def register(self, name: str, ref: ActorRef) -> None:
        present = self._refs.get(name)
        if present is not None:
            raise AlreadyRegistered(
                f"name {name!r} is already registered (to {present!r});"
                " unregister it first or pick another name"
            )
        self._refs[name] = ref

    def lookup(self, name: str) -> ActorRef:
        try:
            return self._refs[name]
        except KeyError:
            raise NotRegistered(
                f"no actor is registered under {name!r} (registered: {self.names()!r});"
                " register it before looking it up"
            ) from None

    def unregister(self, name: str) -> None:
        if self._refs.pop(name, None) is None:
            raise NotRegistered(
                f"cannot unregister {name!r}: no actor is registered under it;"
                " check the name against names()"
            )

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._refs)

    def __contains__(self, name: object) -> bool:
        return name in self._refs

    def __len__(self) -> int:
        return len(self._refs)
