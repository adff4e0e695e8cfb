"""Entities: one actor per id (e.g. `account:42`), activated on demand and passivated when idle.

    accounts = Entities("account", Account, idle_timeout=60.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(accounts.run)
        balance = await accounts.ref("42").ask(GetBalance())    # activates account 42

The host runs a fixed pool of `concurrency` worker tasks (`_pool.EntityPool`) that pull ready
entities from one run queue; an idle entity holds no task and no deque, only its small record
and its actor object:

- an entity is in the run queue at most once and held by at most one worker, so it handles one
  message at a time, in order; a worker handles a batch of messages of an entity, then
  puts it back at the end of the run queue if more wait;
- activation calls `factory(entity_id)`, then `on_start`, then handles the message;
- one sweep task passivates (`on_stop`, then forget) every entity idle for `idle_timeout`, at most
  a quarter of `idle_timeout` late; a message that arrives while its entity passivates waits in
  the record and goes to a fresh incarnation once `on_stop` returned;
- a crash fails the ask being handled with `ActorCrashed`, drops the actor (`on_stop` best
  effort) and hands what is still queued to a fresh incarnation; more than `intensity` crashes
  within `period` seconds end `run` with `EntitiesFailed`, for the supervisor to restart the host.

While the host does not run, tells and asks queue (bounded by `capacity` per entity and by the
ask's timeout); once `close()` was called they raise `ActorStopped`. A host that fails or is
cancelled loses the state of its active entities (no `on_stop`) but keeps their queued messages.

Raises: `InvalidEntities` for bad settings, `AlreadyRunning` for a second `run`, `ActorStopped`
after `close`, `EntitiesFailed` from `run`.
"""

from collections.abc import Callable
from typing import Any

import attrs
import trio

from actors._actor import Actor
from actors._ask import Ask, check_timeout, timeout_error
from actors._entity import IDLE, NOTHING, Entity
from actors._errors import (
    AlreadyRunning,
    InvalidEntities,
    MailboxFull,
    stopped_error,
)
from actors._pool import EntityPool
from actors._ref import ActorRef
from actors._settings import EntitiesSettings


@attrs.frozen
class EntitiesStatistics:
    """A snapshot of an entity host: live entities, and counters since it was made."""

    active: int
    busy: int
    passivated_total: int
    activated_total: int
    crashed: int
    depth: int
    dropped: int


def _check(rule: bool, setting: str, value: object, name: str, fix: str) -> None:
    if not rule:
        raise InvalidEntities(
            f"entities {setting} must be {fix} (got {value!r}) for {name!r}; pass {fix}"
        )


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_DEFAULTS = EntitiesSettings()


class Entities(EntityPool):
    """The host of the entities `name:<id>`, each built by `factory(entity_id)` on demand."""

    def __init__(
        self,
        name: str,
        factory: Callable[[str], Actor],
        *,
        idle_timeout: float = _DEFAULTS.idle_timeout,
        concurrency: int = _DEFAULTS.concurrency,
        capacity: int = _DEFAULTS.capacity,
        intensity: int = _DEFAULTS.intensity,
        period: float = _DEFAULTS.period,
    ) -> None:
        _check(idle_timeout > 0, "idle_timeout", idle_timeout, name, "> 0 seconds")
        _check(_whole(concurrency) and concurrency >= 1, "concurrency", concurrency, name, ">= 1")
        _check(_whole(capacity) and capacity >= 1, "capacity", capacity, name, ">= 1")
        _check(_whole(intensity) and intensity >= 0, "intensity", intensity, name, ">= 0")
        _check(period > 0, "period", period, name, "> 0 seconds")
        settings = EntitiesSettings(
            idle_timeout=idle_timeout,
            concurrency=concurrency,
            capacity=capacity,
            intensity=intensity,
            period=period,
        )
        super().__init__(name, factory, settings)

    @property
    def name(self) -> str:
        return self._name

    @property
    def depth(self) -> int:
        """Messages queued across all entities."""
        return self._depth

    def ref(self, entity_id: str) -> ActorRef:
        """The reference of entity `entity_id`, named `f"{name}:{entity_id}"`; cheap to make,
        and equal to every other reference to the same entity."""
        if not isinstance(entity_id, str):
            raise InvalidEntities(
                f"entity ids must be str (got {entity_id!r}) for {self._name!r};"
                " pass str(entity_id)"
            )
        return ActorRef(self, entity_id)

    def statistics(self) -> EntitiesStatistics:
        return EntitiesStatistics(
            active=self._active,
            busy=self._busy,
            passivated_total=self._passivated,
            activated_total=self._activated,
            crashed=self._crashed,
            depth=self._depth,
            dropped=self._dropped,
        )

    def __repr__(self) -> str:
        return f"<Entities {self._name!r} active={self._active} depth={self._depth}>"

    # -- the host's life --

    async def run(
        self, *, task_status: trio.TaskStatus["Entities"] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Hosts the entities until `request_stop` (returns) or too many crashes (raises).

        Reports `task_status.started(self)` once its workers run. Raises `EntitiesFailed` after
        more than `intensity` entity crashes within `period` seconds, `AlreadyRunning` when the
        host already runs, `ActorStopped` after `close`.
        """
        if self._closed is not None:
            raise stopped_error(self._name, self._closed)
        if self._running:
            raise AlreadyRunning(
                f"entities {self._name!r} already run; request_stop() them and wait for run()"
                " to return before running them again"
            )
        self._running = True
        self._failure = None
        self._crashes = self._no_crashes()
        try:
            for entity in self._entities.values():
                if entity.head is not NOTHING:
                    self._enqueue(entity)
            async with trio.open_nursery() as nursery:
                self._cancel = nursery.cancel_scope
                sweeping = trio.CancelScope()
                nursery.start_soon(self._sweep, sweeping)
                async with trio.open_nursery() as workers:
                    for _ in range(self._settings.concurrency):
                        workers.start_soon(self._work)
                    task_status.started(self)
                sweeping.cancel()
        finally:
            self._reset()
        if self._failure is not None:
            raise self._failure

    def request_stop(self) -> None:
        """Graceful stop: each entity handles what is queued for it now, every active entity
        passivates (`on_stop`), then `run` returns. Later messages wait for the next `run`."""
        if not self._running or self._stopping:
            return
        self._stopping = True
        entities = self._entities.values()
        self._drain = {entity: entity.pending() for entity in entities if entity.pending()}
        for entity in entities:
            if entity.state == IDLE and (entity.actor is not None or entity in self._drain):
                self._enqueue(entity)
        self._wake_all_workers()

    def close(self, reason: str = "stopped") -> None:
        """Declares that the host will not run again: queued asks fail with `ActorStopped`,
        queued tells are counted as dropped, later messages raise `ActorStopped` at once, and a
        running host stops gracefully."""
        if self._closed is not None:
            return
        self._closed = reason
        for entity in list(self._entities.values()):
            while entity.head is not NOTHING:
                item = entity.pop()
                self._depth -= 1
                if type(item) is Ask:
                    item.fail(stopped_error(self._name_of(entity.id), reason))
                else:
                    self._dropped += 1
            if entity.actor is None and entity.state == IDLE:
                del self._entities[entity.id]
        for lot in self._room.values():
            lot.unpark_all()
        self._room.clear()
        self.request_stop()

    def _reset(self) -> None:
        """After `run`: an ungraceful end loses every actor's state; queued messages stay."""
        self._running = False
        self._stopping = False
        self._drain.clear()
        self._cancel = None
        self._idle_workers.clear()
        self._run_queue.clear()
        self._busy = 0
        for entity in list(self._entities.values()):
            entity.state = IDLE
            entity.passivate = False
            if entity.actor is not None:
                entity.actor = None
                self._active -= 1
            if entity.head is NOTHING:
                del self._entities[entity.id]

    # -- the endpoint of `ActorRef` (the address is the entity id) --

    def _depth_of(self, address: str | None) -> int:
        entity = self._entities.get(address) if address is not None else None
        return entity.pending() if entity is not None else 0

    def _entity_with_room(self, entity_id: str) -> Entity | None:
        if self._closed is not None:
            raise stopped_error(self._name_of(entity_id), self._closed)
        entity = self._entities.get(entity_id)
        if entity is None:
            entity = self._entities[entity_id] = Entity(entity_id)
            return entity
        if entity.head is NOTHING or entity.pending() < self._capacity:
            return entity
        return None

    async def _wait_for_room(self, entity_id: str) -> Entity:
        while True:
            entity = self._entity_with_room(entity_id)
            if entity is not None:
                return entity
            entity = self._entities[entity_id]
            lot = self._room.get(entity)
            if lot is None:
                lot = self._room[entity] = trio.lowlevel.ParkingLot()
            await lot.park()

    def _put(self, entity: Entity, message: Any) -> None:
        entity.push(message)
        self._depth += 1
        if entity.state == IDLE and self._running and not self._stopping:
            self._enqueue(entity)

    async def _tell(self, address: str | None, message: Any) -> None:
        assert address is not None
        await trio.lowlevel.checkpoint_if_cancelled()
        entity = self._entity_with_room(address)
        if entity is None:
            entity = await self._wait_for_room(address)
        self._put(entity, message)

    def _tell_nowait(self, address: str | None, message: Any) -> None:
        assert address is not None
        entity = self._entity_with_room(address)
        if entity is None:
            raise MailboxFull(
                f"mailbox of entity {self._name_of(address)!r} is full ({self._capacity}"
                " messages); use `await tell()` to wait for room, or raise the capacity"
            )
        self._put(entity, message)

    async def _ask(
        self,
        address: str | None,
        message: Any,
        timeout: float,  # noqa: ASYNC109 - the deadline is part of the ask, as in the contract
    ) -> Any:
        assert address is not None
        name = self._name_of(address)
        check_timeout(timeout, name)
        await trio.lowlevel.checkpoint_if_cancelled()
        ask = Ask(message)
        entity = self._entity_with_room(address)
        if entity is not None:
            self._put(entity, ask)
            return await ask.wait(name, timeout)
        with trio.CancelScope(deadline=trio.current_time() + timeout):
            entity = await self._wait_for_room(address)
            self._put(entity, ask)
            return await ask.wait(name, None)
        raise timeout_error(name, timeout)
