"""What the SMPP tests share: test SMSCs as subprocesses, an event sink, a running connector.

    peer = await peers.start("smpp34", "--dlr", "tlv")      # a real SMSC on a free loopback port
    record = await peer.wait_for(event="submit")           # a JSON line it printed
    async with serving(SmppConnector("t", options(peer))) as run:
        await run.connector.submit(...)
        await run.sink.wait_for(1)

Each peer prints one JSON object a line (see the scripts under peers/); `Peer.records` holds
them as they come. A peer that exits or stays silent before it listens fails the test.
"""

import json
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from rabbitry.carriers import Event
from rabbitry.carriers.smpp import SmppConnector

PEERS = Path(__file__).parent / "peers"
COMMANDS = {
    "smpp34": [sys.executable, str(PEERS / "smsc_smpp34.py")],
    "twisted": [sys.executable, str(PEERS / "smsc_twisted.py")],
    "netsmpp": ["perl", str(PEERS / "smsc_netsmpp.pl")],
}
START_TIMEOUT = 30.0
WAIT_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Peer:
    """A test SMSC subprocess: its port, and the JSON records it printed so far."""

    def __init__(self, kind: str, port: int, process: trio.Process, stderr: Path) -> None:
        self.kind = kind
        self.port = port
        self.process = process
        self.stderr = stderr
        self.records: list[dict[str, Any]] = []
        self.ended = False
        self._changed = trio.lowlevel.ParkingLot()

    async def read(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        pending = b""
        try:
            async for chunk in stdout:
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        self.records.append(json.loads(line))
                self._changed.unpark_all()
        finally:
            self.ended = True
            self._changed.unpark_all()
            await stdout.aclose()

    def matching(self, **fields: Any) -> list[dict[str, Any]]:
        """The records so far whose fields have these values."""
        return [
            record
            for record in self.records
            if all(record.get(key) == value for key, value in fields.items())
        ]

    async def wait_for(self, count: int = 1, **fields: Any) -> dict[str, Any]:
        """Waits until `count` records match `fields`; returns the last of them."""
        with trio.fail_after(WAIT_TIMEOUT):
            while len(found := self.matching(**fields)) < count:
                if self.ended:
                    raise AssertionError(
                        f"{self.kind} peer ended before printing {count} x {fields};"
                        f" it printed {self.records}; stderr: {self.stderr.read_text()[-2000:]}"
                    )
                await self._changed.park()
        return found[count - 1]

    async def wait_all(self, count: int, **fields: Any) -> list[dict[str, Any]]:
        """Waits until `count` records match `fields` (they come through a pipe, late); all."""
        await self.wait_for(count, **fields)
        return self.matching(**fields)

    async def wait_ended(self) -> None:
        """Waits until the peer's stdout closed: `records` then holds all it ever printed."""
        with trio.fail_after(WAIT_TIMEOUT):
            while not self.ended:
                await self._changed.park()


class Peers:
    """Starts test SMSCs in a nursery; all are killed when the test ends."""

    def __init__(self, nursery: trio.Nursery, directory: Path) -> None:
        self.nursery = nursery
        self.directory = directory
        self.started: list[Peer] = []

    async def start(self, kind: str, *arguments: str) -> Peer:
        port = free_port()
        stderr = self.directory / f"{kind}-{port}.stderr"
        with stderr.open("wb") as errors:
            process = await trio.lowlevel.open_process(
                [*COMMANDS[kind], str(port), *arguments],
                stdout=subprocess.PIPE,
                stderr=errors,
                stdin=subprocess.DEVNULL,
            )
        peer = Peer(kind, port, process, stderr)
        self.started.append(peer)
        self.nursery.start_soon(peer.read)
        try:
            with trio.fail_after(START_TIMEOUT):
                await peer.wait_for(event="listening")
        except trio.TooSlowError:
            raise AssertionError(
                f"{kind} peer did not listen on 127.0.0.1:{port} within {START_TIMEOUT} s;"
                f" stderr: {stderr.read_text()[-2000:]}"
            ) from None
        return peer

    async def stop_all(self) -> None:
        for peer in self.started:
            if peer.process.returncode is None:
                peer.process.kill()
            with trio.CancelScope(shield=True):
                await peer.process.wait()


@asynccontextmanager
async def open_peers(directory: Path) -> AsyncIterator[Peers]:
    """Test SMSCs for the block (`await peers.start("smpp34", ...)`); all killed when it ends.

    Each peer's stderr goes to a file in `directory`.
    """
    async with trio.open_nursery() as nursery:
        peers = Peers(nursery, directory)
        try:
            yield peers
        finally:
            await peers.stop_all()
            nursery.cancel_scope.cancel()


class Sink:
    """An event sink that keeps what it got; `gate(event)` may hold an event back."""

    def __init__(self, gate: Callable[[Event], Any] | None = None) -> None:
        self.events: list[Event] = []
        self.gate = gate
        self._changed = trio.lowlevel.ParkingLot()

    async def __call__(self, event: Event) -> None:
        if self.gate is not None:
            await self.gate(event)
        self.events.append(event)
        self._changed.unpark_all()

    async def wait_for(self, count: int) -> list[Event]:
        with trio.fail_after(WAIT_TIMEOUT):
            while len(self.events) < count:
                await self._changed.park()
        return self.events


class Run:
    """A connector's `run` in the background: `error` is what it raised, if it did."""

    def __init__(self, connector: SmppConnector, sink: Sink) -> None:
        self.connector = connector
        self.sink = sink
        self.error: BaseException | None = None
        self.finished = trio.Event()

    async def main(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await self.connector.run(self.sink, task_status=task_status)
        except Exception as exc:
            self.error = exc
        finally:
            self.finished.set()

    async def wait_ended(self) -> BaseException | None:
        with trio.fail_after(WAIT_TIMEOUT):
            await self.finished.wait()
        return self.error


@asynccontextmanager
async def serving(connector: SmppConnector, sink: Sink | None = None) -> AsyncIterator[Run]:
    """`connector` running (bound) for the block; cancelled (so it unbinds) after it."""
    run = Run(connector, sink or Sink())
    async with trio.open_nursery() as nursery:
        with trio.fail_after(WAIT_TIMEOUT):
            await nursery.start(run.main)
        yield run
        nursery.cancel_scope.cancel()


def options(peer: Peer, **extra: Any) -> dict[str, Any]:
    """Options for a connector to `peer` (the twisted peer's credentials by default)."""
    return {
        "host": "127.0.0.1",
        "port": peer.port,
        "system_id": "rabbitry",
        "password": "secret1",
        **extra,
    }
