"""The daemon's side of the operations API: the live tree, queues, carriers, the parking lot,
invoice runs and metrics, for the gateway's /v1/admin routes and the web console.

    ops = DaemonOps(parts, root=lambda: supervisor, queues=[...], routers=[router])
    GatewayApp(backend, ops=ops)

Parking lot operations go through `broker.ParkingLot` (an exclusive browse of the lot's queue).
A replay is rate limited (`rate` messages a second, in chunks of that size one second apart) and
recorded: each chunk is logged at INFO with the ids replayed and the operator's filter.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import msgspec
import trio
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from broker import (
    FailureRouter,
    NotDeclared,
    ParkedFilter,
    ParkedMessage,
    ParkingLot,
    QueueInUse,
)
from rabbitry.daemon._metrics import LoopLag, MetricsSource, metrics_registry
from rabbitry.gateway import AccountInfo, ApiError, ParkedQuery
from rabbitry.platform import LinkFleet, check_closed
from supervisor import NodeSnapshot

if TYPE_CHECKING:
    from rabbitry.platform import CarrierSide, PlatformBackend
    from supervisor import Supervisor

_log = logging.getLogger("rabbitry.ops")

BROWSE_LIMIT = 10_000
"""How many of the oldest parked messages an operation looks at (filters apply within them)."""


def _filter(query: ParkedQuery) -> ParkedFilter:
    return ParkedFilter(
        message_ids=query.ids,
        reason=query.reason,
        routing_key=query.routing_key,
        older_than=query.older_than,
        newer_than=query.newer_than,
    )


def _summary(parked: ParkedMessage) -> dict[str, object]:
    return {
        "id": parked.message_id,
        "type": parked.type,
        "reason": parked.reason,
        "parked_at": parked.parked_at,
        "queue": parked.queue,
        "routing_key": parked.original_routing_key,
        "exchange": parked.original_exchange,
        "attempt": parked.attempt,
        "error_type": parked.error_type,
        "error_message": parked.error_message,
        "replay_count": parked.replay_count,
    }


def _detail(parked: ParkedMessage) -> dict[str, object]:
    body = parked.envelope.body
    try:
        text, encoding = body.decode(), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(body).decode(), "base64"
    return {
        **_summary(parked),
        "history": msgspec.to_builtins(parked.history),
        "headers": msgspec.to_builtins(parked.envelope.headers),
        "body": text,
        "body_encoding": encoding,
    }


class DaemonOps:
    """Implements `rabbitry.gateway.OpsBackend` for the running daemon."""

    def __init__(
        self,
        backend: PlatformBackend,
        carriers: dict[str, CarrierSide],
        *,
        queues: Callable[[], Iterable[str]],
        routers: Iterable[FailureRouter],
        parking: ParkingLot,
        loop_lag: LoopLag | None = None,
        links: LinkFleet | None = None,
    ) -> None:
        self.backend = backend
        self.links = links
        """The fleet the carrier links are spread over (None: each link is this daemon's)."""
        self.context = backend.context
        self.carrier_sides = carriers
        self.queue_names = queues
        self.routers = tuple(routers)
        self.parking = parking
        self.root: Callable[[], Supervisor | None] = lambda: None
        self._draining = trio.Event()
        self._registry = metrics_registry(
            MetricsSource(
                snapshot=self._snapshot,
                transport=self.context.transport,
                routers=lambda: self.routers,
                carriers=lambda: self.carrier_sides.values(),
                loop_lag=None if loop_lag is None else loop_lag.histogram,
                store_threads=self.context.records.threads,
            )
        )

    def _snapshot(self) -> NodeSnapshot | None:
        root = self.root()
        return None if root is None else root.snapshot()

    def drain(self) -> None:
        """The daemon drains: live streams end."""
        self._draining.set()

    def draining(self) -> trio.Event:
        return self._draining

    async def tree(self) -> dict[str, object]:
        snapshot = self._snapshot()
        return {} if snapshot is None else msgspec.to_builtins(snapshot)

    async def queues(self) -> list[dict[str, object]]:
        found = []
        for name in self.queue_names():
            try:
                stats = await self.context.transport.queue_statistics(name)
            except NotDeclared:
                continue
            found.append({"name": name, "ready": stats.messages, "consumers": stats.consumers})
        return found

    async def carriers(self) -> list[dict[str, object]]:
        carriers = []
        for name, side in self.carrier_sides.items():
            stats = [slot.link.statistics() for slot in side.slots]
            failed: dict[str, int] = {}
            for each in stats:
                for code, value in each.failed.items():
                    failed[code] = failed.get(code, 0) + value
            carriers.append(
                {
                    "name": name,
                    "health": side.health(),
                    "submitted": sum(each.submitted for each in stats),
                    "accepted": sum(each.accepted for each in stats),
                    "segments": sum(each.segments for each in stats),
                    "throttled": sum(each.throttled for each in stats),
                    "in_flight": sum(each.in_flight for each in stats),
                    "window": sum(slot.link.window.size for slot in side.slots),
                    "failed": failed,
                    # who holds which link, as this daemon knows it: itself or not
                    "links": [
                        {
                            "link": slot.index,
                            "held": slot.holder is not None,
                            "holder": slot.holder,
                            # whether the fleet assigns the link to this daemon
                            "assigned": self.links is None
                            or self.links.assigned(name, slot.index, links=len(side.slots)),
                            "health": slot.connector.health(),
                        }
                        for slot in side.slots
                    ],
                }
            )
        return carriers

    @asynccontextmanager
    async def _parking_lot(self) -> AsyncIterator[ParkingLot]:
        """The lot (which browses one operation at a time); another daemon's browse is a 409."""
        try:
            yield self.parking
        except QueueInUse:
            raise ApiError(
                409, "busy", "another operation is browsing the parking lot; retry"
            ) from None

    async def parked(self, query: ParkedQuery) -> list[dict[str, object]]:
        async with self._parking_lot() as lot:
            found = await lot.list(_filter(query), limit=BROWSE_LIMIT)
        return [_summary(parked) for parked in found[: query.limit]]

    async def parked_message(self, message_id: str) -> dict[str, object] | None:
        async with self._parking_lot() as lot:
            found = await lot.list(ParkedFilter(message_ids={message_id}), limit=BROWSE_LIMIT)
        return _detail(found[0]) if found else None

    async def replay(self, query: ParkedQuery, *, rate: float) -> dict[str, object]:
        async with self._parking_lot() as lot:
            selected = await lot.list(_filter(query), limit=BROWSE_LIMIT)
        ids = [parked.message_id for parked in selected[: query.limit]]
        chunk = max(int(rate), 1)
        replayed: list[str] = []
        failed: list[dict[str, str]] = []
        for start in range(0, len(ids), chunk):
            if start:
                await trio.sleep(chunk / rate)
            batch = ids[start : start + chunk]
            async with self._parking_lot() as lot:
                result = await lot.replay(ParkedFilter(message_ids=batch), limit=BROWSE_LIMIT)
            replayed += [parked.message_id for parked in result.replayed]
            failed += [{"id": parked.message_id, "error": why} for parked, why in result.failed]
            _log.info(
                "parking lot replay: %d replayed %s (filter %s)",
                len(result.replayed),
                [parked.message_id for parked in result.replayed],
                msgspec.to_builtins(query),
            )
        return {"replayed": len(replayed), "failed": failed, "ids": replayed}

    async def purge(self, query: ParkedQuery) -> dict[str, object]:
        async with self._parking_lot() as lot:
            selected = await lot.list(_filter(query), limit=BROWSE_LIMIT)
            chosen = [parked.message_id for parked in selected[: query.limit]]
            purged = await lot.purge(ParkedFilter(message_ids=chosen), limit=BROWSE_LIMIT)
        ids = [parked.message_id for parked in purged]
        _log.info("parking lot purge: %d purged %s", len(ids), ids)
        return {"purged": len(ids), "ids": ids}

    async def accounts(self) -> list[dict[str, object]]:
        return [
            {"id": record.id, "name": record.name, "currency": record.currency}
            for record in await self.context.records.accounts()
        ]

    async def run_invoices(self, period: str) -> dict[str, object]:
        check_closed(period, time.time())  # refused for every account alike, even with none
        invoices = []
        for record in await self.context.records.accounts():
            account = AccountInfo(id=record.id, name=record.name, currency=record.currency)
            answer = await self.backend.request_invoice(
                account, period, request_id=f"run-{period}-{int(time.time())}"
            )
            invoices.append({"account": record.id, "id": answer.id, "status": answer.status})
        return {"period": period, "invoices": invoices}

    async def invoice_status(self, account: str, invoice: str) -> dict[str, object] | None:
        record = await self.context.records.invoice(account, invoice)
        if record is None:
            return None
        return {
            "id": record.id,
            "account": account,
            "period": record.period,
            "status": record.status,
        }

    def metrics(self) -> tuple[bytes, str]:
        return generate_latest(self._registry), CONTENT_TYPE_LATEST
