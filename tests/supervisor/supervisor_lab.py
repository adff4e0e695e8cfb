"""A controllable child for supervisor tests: it logs what happens to it and does as told."""

from collections import Counter
from typing import Any

import trio

from supervisor import Backoff, ChildSpec, Restart


class BoomError(Exception):
    """What test children crash with."""


class Handle:
    """What a test child reports ready with; the test makes it crash, exit or ignore stops."""

    def __init__(self, lab: "Lab", name: str, stubborn: bool) -> None:
        self.lab = lab
        self.name = name
        self.stubborn = stubborn
        self.depth = 0
        self.outcome: tuple[str, BaseException | None] | None = None
        self.event = trio.Event()

    def request_stop(self) -> None:
        self.lab.log.append(f"asked {self.name}")
        if not self.stubborn:
            self._finish("stop", None)

    def crash(self, error: BaseException | None = None) -> None:
        self._finish("crash", error or BoomError(f"{self.name} broke"))

    def exit(self) -> None:
        self._finish("exit", None)

    def _finish(self, how: str, error: BaseException | None) -> None:
        if self.outcome is None:
            self.outcome = (how, error)
            self.event.set()


class Lab:
    """Builds test children and keeps one log of starts and stops, in order."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.handles: dict[str, Handle] = {}
        self.starts: Counter[str] = Counter()
        self.fail_starts: Counter[str] = Counter()
        self.fail_stops: set[str] = set()
        self.started_at: dict[str, float] = {}
        self.next_start = trio.Event()

    def child(
        self,
        name: str,
        *,
        restart: Restart = Restart.PERMANENT,
        backoff: Backoff | None = None,
        shutdown: float = 5.0,
        stubborn: bool = False,
    ) -> ChildSpec:
        async def start(*, task_status: Any) -> None:
            self.starts[name] += 1
            if self.fail_starts[name] > 0:
                self.fail_starts[name] -= 1
                self.log.append(f"failed {name}")
                raise BoomError(f"{name} cannot start")
            handle = Handle(self, name, stubborn)
            self.handles[name] = handle
            await trio.lowlevel.checkpoint()  # a start that takes a scheduler round
            self.log.append(f"start {name}")
            self.started_at[name] = trio.current_time()
            self.next_start.set()
            self.next_start = trio.Event()
            task_status.started(handle)
            try:
                await handle.event.wait()
            except trio.Cancelled:
                self.log.append(f"cancel {name}")
                raise
            assert handle.outcome is not None
            how, error = handle.outcome
            self.log.append(f"{how} {name}")
            if how == "stop" and name in self.fail_stops:
                raise BoomError(f"{name} failed while stopping")
            if error is not None:
                raise error

        return ChildSpec(
            name=name,
            start=start,
            restart=restart,
            backoff=backoff if backoff is not None else Backoff(),
            shutdown=shutdown,
        )

    def crash(self, name: str, error: BaseException | None = None) -> None:
        self.handles[name].crash(error)

    def exit(self, name: str) -> None:
        self.handles[name].exit()

    def take(self) -> list[str]:
        """The log so far, emptied."""
        taken, self.log[:] = list(self.log), []
        return taken
