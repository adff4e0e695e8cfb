"""A fake daemon behind the operations API, with data shaped like the real daemon's.

The tree is the platform tree of rabbitry/daemon/_tree.py (rabbitry > accounts, accounts-in,
carrier.<name> > reports/link-0, invoice jobs, pools, gateway); carrier segment counters grow
with the wall clock at a steady rate, so the console's segments per second are steady too.
"""

import copy
import time
from typing import Any

import trio

from rabbitry.gateway import ApiError, ParkedQuery

METRICS = (
    b"# HELP rabbitry_restarts_total Child restarts.\n"
    b"# TYPE rabbitry_restarts_total counter\n"
    b'rabbitry_restarts_total{path="rabbitry/carrier.sim/link-0"} 3.0\n'
)
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def node(
    path: str, kind: str, state: str = "running", *children: dict[str, Any], **fields: Any
) -> dict[str, Any]:
    """A `NodeSnapshot` as `msgspec.to_builtins` gives it."""
    snapshot: dict[str, Any] = {
        "path": path,
        "kind": kind,
        "state": state,
        "restarts": 0,
        "last_failure": None,
        "mailbox_depth": None,
        "uptime": 11_482.5 if state == "running" else None,
        "backoff_remaining": None,
        "children": list(children),
    }
    snapshot.update(fields)
    return snapshot


def platform_tree() -> dict[str, Any]:
    def carrier(name: str, link: dict[str, Any]) -> dict[str, Any]:
        base = f"rabbitry/carrier.{name}"
        return node(base, "supervisor", "running", node(f"{base}/reports", "worker"), link)

    refused = {
        "type": "ConnectionRefusedError",
        "message": "[Errno 111] Connect call failed ('10.20.4.12', 2775)",
    }
    return node(
        "rabbitry",
        "supervisor",
        "running",
        node(
            "rabbitry/accounts",
            "entities",
            "running",
            node("rabbitry/accounts/acc-acme", "worker", mailbox_depth=2, uptime=812.0),
            node("rabbitry/accounts/acc-globex", "worker", mailbox_depth=0, uptime=95.0),
        ),
        node(
            "rabbitry/accounts-in",
            "supervisor",
            "running",
            *(node(f"rabbitry/accounts-in/accounts.{n}", "worker") for n in range(4)),
        ),
        carrier("orange", node("rabbitry/carrier.orange/link-0", "worker")),
        carrier("bics", node("rabbitry/carrier.bics/link-0", "worker", restarts=1)),
        carrier(
            "sim",
            node(
                "rabbitry/carrier.sim/link-0",
                "worker",
                "backing_off",
                restarts=3,
                last_failure=refused,
                backoff_remaining=7.5,
            ),
        ),
        node("rabbitry/invoice-jobs", "entities"),
        node("rabbitry/invoices", "worker", mailbox_depth=0),
        node("rabbitry/invoices-in", "worker"),
        node(
            "rabbitry/pool.reports",
            "pool",
            "running",
            node("rabbitry/pool.reports/pool-0", "worker", mailbox_depth=4),
        ),
        node(
            "rabbitry/pool.inbound",
            "pool",
            "running",
            node("rabbitry/pool.inbound/pool-0", "worker", mailbox_depth=0),
        ),
        node(
            "rabbitry/pool.callbacks",
            "pool",
            "running",
            node("rabbitry/pool.callbacks/pool-0", "worker", mailbox_depth=9),
            node("rabbitry/pool.callbacks/pool-1", "worker", mailbox_depth=7),
        ),
        node("rabbitry/gateway", "worker"),
    )


QUEUES: list[dict[str, object]] = [
    {"name": "carrier.orange", "ready": 184, "consumers": 1},
    {"name": "carrier.bics", "ready": 1_262, "consumers": 1},
    {"name": "carrier.sim", "ready": 0, "consumers": 1},
    {"name": "sms.reports", "ready": 12, "consumers": 1},
    {"name": "sms.inbound", "ready": 0, "consumers": 1},
    {"name": "sms.callbacks", "ready": 57, "consumers": 2},
    {"name": "sms.invoices", "ready": 0, "consumers": 1},
    {"name": "parking", "ready": 3, "consumers": 0},
]


def parked_message(message_id: str, age: float, **fields: Any) -> dict[str, object]:
    message: dict[str, object] = {
        "id": message_id,
        "type": "sms.Submit",
        "reason": "exhausted",
        "parked_at": round(time.time() - age, 3),
        "queue": "carrier.sim",
        "routing_key": "sms.send.sim",
        "exchange": "sms",
        "attempt": 5,
        "error_type": "CarrierDown",
        "error_message": "carrier 'sim' is down (link backing off)",
        "replay_count": 0,
    }
    message.update(fields)
    return message


def parking_lot() -> list[dict[str, object]]:
    return [
        parked_message(
            "01J9ZK6Q2V3C8HX4T7N5RWEY1M",
            age=26 * 3600 + 600,
            type="sms.Report",
            reason="undecodable",
            queue="sms.reports",
            routing_key="sms.report",
            attempt=1,
            error_type="DecodeError",
            error_message="unknown message type 'sms.ReportV0'",
            replay_count=1,
        ),
        parked_message(
            "01J9ZQ4D8M0S5B2YFJ3K7PAX6C",
            age=2 * 3600 + 1_260,
            type="sms.Callback",
            reason="permanent",
            queue="sms.callbacks",
            routing_key="sms.callback",
            exchange="sms",
            attempt=1,
            error_type="HTTPStatusError",
            error_message="410 Gone from https://hooks.acme.test/sms/status",
        ),
        parked_message("01J9ZT1H7R6W3N8C0QG5BVDK2E", age=754),
    ]


def _matches(query: ParkedQuery, message: dict[str, object]) -> bool:
    if query.ids is not None and message["id"] not in query.ids:
        return False
    if query.reason is not None and message["reason"] != query.reason:
        return False
    if query.routing_key is not None:
        key = str(message["routing_key"])
        pattern = query.routing_key
        if pattern.endswith(".#"):
            if not (key == pattern[:-2] or key.startswith(pattern[:-1])):
                return False
        elif key != pattern:
            return False
    return True


class FakeOps:
    """Records every call; `broken` names the methods that raise."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.tree_snapshot = platform_tree()
        self.queue_list = copy.deepcopy(QUEUES)
        self.lot = parking_lot()
        self.broken: set[str] = set()
        self.drain = trio.Event()
        self.started = time.time()

    def _enter(self, name: str) -> None:
        if name in self.broken:
            raise RuntimeError(f"{name} is broken in this test")

    def find(self, path: str) -> dict[str, Any]:
        pending = [self.tree_snapshot]
        while pending:
            current = pending.pop()
            if current["path"] == path:
                return current
            pending.extend(current["children"])
        raise KeyError(path)

    def park(self, message: dict[str, object]) -> None:
        self.lot.append(message)

    async def tree(self) -> dict[str, object]:
        self._enter("tree")
        return copy.deepcopy(self.tree_snapshot)

    async def queues(self) -> list[dict[str, object]]:
        self._enter("queues")
        return copy.deepcopy(self.queue_list)

    async def carriers(self) -> list[dict[str, object]]:
        self._enter("carriers")
        elapsed = time.time() - self.started

        def carrier(
            name: str, health: str, rate: float, base: int, **fields: Any
        ) -> dict[str, object]:
            segments = base + int(rate * elapsed)
            answer: dict[str, object] = {
                "name": name,
                "health": health,
                "submitted": segments - segments // 9,
                "accepted": segments - segments // 9 - 14,
                "segments": segments,
                "throttled": 0,
                "in_flight": 0,
                "window": 64,
                "failed": {},
            }
            answer.update(fields)
            return answer

        return [
            carrier("orange", "bound", 412.3, 1_284_190, in_flight=37),
            carrier(
                "bics",
                "degraded",
                37.6,
                220_514,
                throttled=1_208,
                in_flight=8,
                window=10,
                failed={"ESME_RTHROTTLED": 1_208, "ESME_RSYSERR": 3},
            ),
            carrier("sim", "down", 0.0, 5_003, failed={"CarrierDown": 41}),
        ]

    async def parked(self, query: ParkedQuery) -> list[dict[str, object]]:
        self._enter("parked")
        self.calls.append(("parked", query))
        return [dict(m) for m in self.lot if _matches(query, m)][: query.limit]

    async def parked_message(self, message_id: str) -> dict[str, object] | None:
        self._enter("parked_message")
        for message in self.lot:
            if message["id"] == message_id:
                history = [
                    {
                        "attempt": 1,
                        "at": message["parked_at"],
                        "error_type": message["error_type"],
                        "error_message": message["error_message"],
                        "queue": message["queue"],
                    }
                ]
                return {
                    **message,
                    "history": history,
                    "headers": {"x-parked-reason": message["reason"]},
                    "body": '{"to": "+33612345678"}',
                    "body_encoding": "utf-8",
                }
        return None

    async def replay(self, query: ParkedQuery, *, rate: float) -> dict[str, object]:
        self._enter("replay")
        self.calls.append(("replay", query, rate))
        chosen = [m for m in self.lot if _matches(query, m)][: query.limit]
        self.lot = [m for m in self.lot if m not in chosen]
        ids = [m["id"] for m in chosen]
        return {"replayed": len(ids), "failed": [], "ids": ids}

    async def purge(self, query: ParkedQuery) -> dict[str, object]:
        self._enter("purge")
        self.calls.append(("purge", query))
        chosen = [m for m in self.lot if _matches(query, m)][: query.limit]
        self.lot = [m for m in self.lot if m not in chosen]
        return {"purged": len(chosen), "ids": [m["id"] for m in chosen]}

    async def accounts(self) -> list[dict[str, object]]:
        self._enter("accounts")
        return [
            {"id": "acc-acme", "name": "Acme", "currency": "EUR"},
            {"id": "acc-globex", "name": "Globex", "currency": "USD"},
        ]

    async def run_invoices(self, period: str) -> dict[str, object]:
        self._enter("run_invoices")
        self.calls.append(("run_invoices", period))
        invoices = [
            {"account": "acc-acme", "id": f"inv-acme-{period}", "status": "pending"},
            {"account": "acc-globex", "id": f"inv-globex-{period}", "status": "ready"},
        ]
        return {"period": period, "invoices": invoices}

    async def invoice_status(self, account: str, invoice_id: str) -> dict[str, object] | None:
        self._enter("invoice_status")
        if (account, invoice_id) == ("acc-acme", "inv-acme-2025-01"):
            return {"id": invoice_id, "account": account, "period": "2025-01", "status": "ready"}
        if account == "acc-locked":
            raise ApiError(409, "locked", "account 'acc-locked' is being closed")
        return None

    def metrics(self) -> tuple[bytes, str]:
        self._enter("metrics")
        return METRICS, METRICS_TYPE

    def draining(self) -> trio.Event:
        return self.drain
