"""The worker pool behind `Entities`: one run queue, `concurrency` workers, one sweep task.

`Entities` (in `_entities.py`) is the public host: settings, `run`, stopping, and the sending
side of its references. This base class holds the state they share and the part that runs
entities:

- `_enqueue` puts a ready entity at the end of the run queue (it is there at most once) and wakes
  one idle worker; a worker holds the entity while it `_serve`s it, so an entity handles one
  message at a time, in order, up to `_ENTITY_BATCH` before the others get a turn;
- `_serve` activates the entity if needed (`factory`, `on_start`), handles its messages,
  passivates it when the sweep asked for it or the host stops, and turns an error into a crash;
- `_sweep` wakes every quarter of `idle_timeout` and schedules the passivation of every entity
  idle for longer than `idle_timeout`: no timer per entity.
"""

import logging
from collections import deque
from collections.abc import Callable
from typing import Any, cast

import trio

from actors._actor import Actor
from actors._ask import Ask
from actors._entity import HELD, IDLE, NOTHING, SCHEDULED, Entity
from actors._errors import EntitiesFailed, crashed_error, interrupted_error
from actors._mailbox import stop_quietly
from actors._ref import ActorRef, Endpoint
from actors._settings import EntitiesSettings
from actors._window import RestartWindow

_log = logging.getLogger("actors")

# Messages of one entity a worker handles before it lets the other ready entities run.
_ENTITY_BATCH = 16
# Entities a worker serves between two scheduler checkpoints when it never has to wait.
_BATCH = 128


class EntityPool:
    """The state of an entity host and the workers that serve its entities."""

    def __init__(
        self,
        name: str,
        factory: Callable[[str], Actor],
        settings: EntitiesSettings,
    ) -> None:
        self._name = name
        self._factory = factory
        self._settings = settings
        self._capacity = settings.capacity
        self._entities: dict[str, Entity] = {}
        self._run_queue: deque[Entity] = deque()
        self._idle_workers: list[trio.lowlevel.Task] = []
        self._room: dict[Entity, trio.lowlevel.ParkingLot] = {}
        self._drain: dict[Entity, int] = {}
        self._crashes = self._no_crashes()
        self._running = False
        self._stopping = False
        self._closed: str | None = None
        self._failure: EntitiesFailed | None = None
        self._cancel: trio.CancelScope | None = None
        self._depth = 0
        self._active = 0
        self._busy = 0
        self._activated = 0
        self._passivated = 0
        self._crashed = 0
        self._dropped = 0

    def _no_crashes(self) -> RestartWindow:
        return RestartWindow(intensity=self._settings.intensity, period=self._settings.period)

    def _name_of(self, address: str | None) -> str:
        return f"{self._name}:{address}"

    async def _sweep(self, scope: trio.CancelScope) -> None:
        idle_timeout = self._settings.idle_timeout
        with scope:
            while True:
                await trio.sleep(idle_timeout / 4)
                if self._stopping:
                    continue
                cutoff = trio.current_time() - idle_timeout
                for entity in self._entities.values():
                    if (
                        entity.state == IDLE
                        and entity.actor is not None
                        and entity.head is NOTHING
                        and entity.last_active <= cutoff
                    ):
                        entity.passivate = True
                        self._enqueue(entity)

    # -- the workers --

    def _enqueue(self, entity: Entity) -> None:
        entity.state = SCHEDULED
        self._run_queue.append(entity)
        if self._idle_workers:
            trio.lowlevel.reschedule(self._idle_workers.pop())

    def _wake_all_workers(self) -> None:
        while self._idle_workers:
            trio.lowlevel.reschedule(self._idle_workers.pop())

    async def _work(self) -> None:
        run_queue = self._run_queue
        budget = _BATCH
        while True:
            if run_queue:
                entity = run_queue.popleft()
                entity.state = HELD
                self._busy += 1
                try:
                    await self._serve(entity)
                finally:
                    self._busy -= 1
                    entity.state = IDLE
                self._release(entity)
                budget -= 1
                if not budget:
                    budget = _BATCH
                    await trio.lowlevel.checkpoint()
            elif self._stopping and not self._busy:
                self._wake_all_workers()
                return
            else:
                await self._wait_for_work()

    async def _wait_for_work(self) -> None:
        task = trio.lowlevel.current_task()
        idle = self._idle_workers
        idle.append(task)

        def abort(_: Any) -> trio.lowlevel.Abort:
            idle.remove(task)
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    def _release(self, entity: Entity) -> None:
        if entity.head is not NOTHING:
            if not self._stopping or entity in self._drain:
                self._enqueue(entity)
        elif entity.actor is None and self._entities.get(entity.id) is entity:
            del self._entities[entity.id]

    async def _serve(self, entity: Entity) -> None:
        passivate = entity.passivate
        entity.passivate = False
        stopping = self._stopping
        if entity.head is NOTHING or (stopping and not self._drain.get(entity)):
            if entity.actor is not None and (passivate or stopping):
                self._drain.pop(entity, None)
                await self._passivate(entity)
            return
        actor = entity.actor
        if actor is None:
            actor = await self._activate(entity)
            if actor is None:
                return
        taken = 0
        current: Ask | None = None
        try:
            while entity.head is not NOTHING and taken < _ENTITY_BATCH:
                if self._stopping:
                    # Only what was queued when the stop was requested (`_drain`) is handled.
                    left = self._drain.get(entity, 0)
                    if not left:
                        break
                    self._drain[entity] = left - 1
                item = entity.pop()
                self._depth -= 1
                taken += 1
                if self._room:
                    self._free_room(entity)
                if type(item) is Ask:
                    current = item
                    result = await actor.handle(item.message)
                    current = None
                    item.reply(result)
                else:
                    await actor.handle(item)
        except Exception as exc:  # noqa: BLE001 - any error of the actor is its crash
            await self._crash(entity, actor, current, exc)
        except BaseException:
            if current is not None:
                current.fail(interrupted_error(self._name_of(entity.id)))
            raise
        entity.last_active = trio.current_time()
        if self._stopping and (entity.head is NOTHING or not self._drain.get(entity)):
            self._drain.pop(entity, None)
            if entity.actor is not None:
                await self._passivate(entity)

    async def _activate(self, entity: Entity) -> Actor | None:
        try:
            actor = self._factory(entity.id)
            # Only `Entities` (the endpoint of these refs) is ever instantiated.
            actor.ref = ActorRef(cast("Endpoint", self), entity.id)
            await actor.on_start()
        except Exception as exc:  # noqa: BLE001 - any error of the actor is its crash
            name = self._name_of(entity.id)
            _log.error("entity %r failed to start", name, exc_info=exc)
            self._note_crash(exc, name)
            return None
        entity.actor = actor
        entity.last_active = trio.current_time()
        self._active += 1
        self._activated += 1
        return actor

    async def _crash(
        self, entity: Entity, actor: Actor, current: Ask | None, exc: Exception
    ) -> None:
        name = self._name_of(entity.id)
        if current is not None:
            current.fail(crashed_error(name, exc))
        entity.actor = None
        self._active -= 1
        _log.error("entity %r crashed; what is queued goes to a fresh one", name, exc_info=exc)
        await stop_quietly(actor, name)
        self._note_crash(exc, name)

    async def _passivate(self, entity: Entity) -> None:
        actor = entity.actor
        assert actor is not None
        entity.actor = None
        self._active -= 1
        self._passivated += 1
        try:
            await actor.on_stop()
        except Exception:  # noqa: BLE001 - on_stop is best effort; its error is logged
            _log.exception("on_stop of entity %r failed; ignored", self._name_of(entity.id))

    def _note_crash(self, cause: Exception, name: str) -> None:
        self._crashed += 1
        self._crashes, exceeded = self._crashes.add(trio.current_time())
        if exceeded:
            if self._failure is None:
                failure = EntitiesFailed(
                    f"entities {self._name!r} had more than {self._settings.intensity} entity"
                    f" crashes within {self._settings.period!r} s, the last in {name!r}: {cause!r};"
                    " fix the cause or raise intensity / period"
                )
                failure.__cause__ = cause
                self._failure = failure
            if self._cancel is not None:
                self._cancel.cancel()

    def _free_room(self, entity: Entity) -> None:
        lot = self._room.get(entity)
        if lot is not None:
            lot.unpark()
            if not lot:
                del self._room[entity]
