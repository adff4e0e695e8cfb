"""The ACME connector: "sends" each SMS by appending it, as one JSON line, to an outbox file.

    [[carriers]]
    name = "acme"
    plugin = "acme"                 # the entry point this package declares (pyproject.toml)
    prefixes = ["+"]
    [carriers.options]
    outbox = "/var/spool/acme/outbox.jsonl"
    refuse = ["+33600000666"]       # destinations ACME refuses

    connector = AcmeConnector("acme", {"outbox": "/tmp/outbox.jsonl"})
    async with trio.open_nursery() as nursery:
        await nursery.start(connector.run, sink)      # "connected": submits work from here
        accepted = await connector.submit(Submission.of("m-1", "+4470000", "Shop", "Hi"))
        accepted.carrier_ids                          # ('acme-3f2a...',): one id per part
        # one line in the outbox, then: await sink(DeliveryEvent(carrier_ids[0], "delivered"))

It is the model to copy for a real carrier, and it imports nothing of Rabbitry but the public
`rabbitry.carriers` API. Where a real connector talks to its carrier, this one says so:

- `run` is the connection. A real connector connects and logs in, then calls
  `task_status.started()`; this one checks that the outbox can be written. Then it stays up,
  pushing what the carrier reports through `await events(event)`, and forgets a report only once
  that await returned (the platform stored it): that is when a real connector acknowledges it.
- `submit` sends one SMS and returns the carrier's ids, one per part, or raises one of the
  `CarrierError`s, which tell the platform what to do: `PermanentError` fails the message (its
  price is refunded), `CarrierDown` fails over to the next carrier of the route, and
  `RetryableError` or `Throttled` try again later.
- `health` says, without any I/O, whether submits can work now.

Options (checked when the daemon starts; a wrong one raises `ValueError` naming it):

- `outbox` (str, required): the file each accepted SMS is appended to, one JSON object a line
  with the keys carrier_ids, message_id, to, from, text, encoding and segments.
- `refuse` (list of str, default empty): destinations refused with `PermanentError`.

Every accepted SMS is reported "delivered", once, under the id of its first part.
"""

import collections
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import trio

from rabbitry.carriers import (
    Accepted,
    CarrierDown,
    DeliveryEvent,
    EventSink,
    Health,
    PermanentError,
    Submission,
)


@dataclass(frozen=True)
class AcmeOptions:
    """The connector's options, checked (see the module docstring)."""

    outbox: Path
    refuse: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, name: str, options: Mapping[str, object]) -> "AcmeOptions":
        """Checks the `options` table of carrier `name`; raises `ValueError` naming a wrong one."""
        for key in options:
            if key not in ("outbox", "refuse"):
                raise ValueError(
                    f"carriers.{name}.options.{key} is not an acme option (known: outbox, refuse)"
                )
        outbox = options.get("outbox")
        if not isinstance(outbox, str) or not outbox:
            raise ValueError(
                f"carriers.{name}.options.outbox must be the path of the outbox file"
                f" (got {outbox!r})"
            )
        refuse = options.get("refuse", [])
        if not isinstance(refuse, list) or not all(isinstance(to, str) for to in refuse):
            raise ValueError(
                f"carriers.{name}.options.refuse must be a list of destinations like"
                f' ["+33600000666"] (got {refuse!r})'
            )
        return cls(Path(outbox), frozenset(refuse))


class AcmeConnector:
    """A connector to the ACME "carrier" (an outbox file); see the module docstring."""

    def __init__(self, name: str, options: Mapping[str, object]) -> None:
        self.name = name
        self.options = AcmeOptions.parse(name, options)
        self._connected = False
        self._writing = trio.Lock()  # one line at a time: lines never interleave
        # Reports not yet taken by the platform; kept across runs, as a carrier resends them.
        self._unreported: collections.deque[DeliveryEvent] = collections.deque()
        self._reported = trio.lowlevel.ParkingLot()

    async def run(
        self, events: EventSink, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Connects (checks the outbox), then pushes delivery reports until cancelled.

        Raises `CarrierDown` when the outbox cannot be written; the platform restarts `run`
        later and meanwhile fails the route over to its next carrier.
        """
        await self._append("")  # the "login": fails now rather than at the first submit
        self._connected = True
        task_status.started()
        try:
            while True:
                while not self._unreported:
                    await self._reported.park()
                await events(self._unreported[0])  # returns once the platform stored it
                self._unreported.popleft()  # only now "acknowledged"; if cancelled, sent again
        finally:
            self._connected = False

    async def submit(self, submission: Submission) -> Accepted:
        """Appends `submission` to the outbox; returns one id per part, or raises."""
        if not self._connected:
            raise CarrierDown(f"carrier {self.name!r} is not connected", code="down")
        if submission.to in self.options.refuse:
            raise PermanentError(
                f"carrier {self.name!r} refuses destination {submission.to!r}"
                f" (listed in carriers.{self.name}.options.refuse)",
                code="refused",
            )
        ids = tuple(f"{self.name}-{uuid.uuid4().hex}" for _ in submission.parts)
        line = {
            "carrier_ids": ids,
            "message_id": submission.message_id,
            "to": submission.to,
            "from": submission.sender,
            "text": submission.text,
            "encoding": submission.encoding,
            "segments": submission.segments,
        }
        await self._append(json.dumps(line, ensure_ascii=False) + "\n")
        self._unreported.append(DeliveryEvent(ids[0], "delivered"))
        self._reported.unpark()
        return Accepted(ids)

    def health(self) -> Health:
        """The state: "bound" while `run` runs, "down" otherwise."""
        return "bound" if self._connected else "down"

    async def _append(self, text: str) -> None:
        # File I/O blocks: it runs in a thread, and a cancellation waits for it (no half line).
        try:
            async with self._writing:
                await trio.to_thread.run_sync(self._write, text)
        except OSError as exc:
            raise CarrierDown(
                f"carrier {self.name!r} cannot write its outbox {str(self.options.outbox)!r}:"
                f" {exc}",
                code="outbox",
            ) from exc

    def _write(self, text: str) -> None:
        with self.options.outbox.open("a", encoding="utf-8") as outbox:
            outbox.write(text)
