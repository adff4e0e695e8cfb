"""SIGHUP: reload the config file into the running daemon, without losing in-flight work.

    reloader = Reloader(path, config, parts, root)
    await reloader.reload()      # -> "rates changed; carrier b added; pool audit 1 -> 3 actors"

What a reload applies:

- `[rates]`: the rate card is swapped at once (the next request is priced with it);
- `[[carriers]]` added, removed or changed (plugin, prefixes, tps, options): a removed or changed
  carrier's branch is stopped gracefully (its consumer stops taking batches, finishes the one in
  hand and acks it; what is still queued waits in RabbitMQ), a changed one is started again with
  its new settings, an added one is declared and started; routes follow;
- `[[pools]]` added, removed or changed (size, prefetch, restart...): the same, per pool.

Anything else (currency, accounts, broker, store, http, logging, retry, tax, sms, webhooks) needs
a restart: a reload that changes it is refused with the reason, and so is a file that does not
validate or names an actor class that does not import. A refused reload changes nothing: the old
config keeps running.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from conf import ConfigError
from rabbitry.config import Config, effective_pools
from rabbitry.daemon._build import (
    carrier_rates,
    carrier_side,
    load_checked_config,
    rate_card,
    routes,
)
from rabbitry.daemon._tree import Parts, carrier_branch, pool_branch, pools_topology
from rabbitry.platform import platform_topology

if TYPE_CHECKING:
    from supervisor import Supervisor

_log = logging.getLogger("rabbitry.reload")

RESTART_ONLY = (
    "currency",
    "accounts",
    "broker",
    "store",
    "http",
    "logging",
    "retry",
    "tax",
    "sms",
    "webhooks",
)


class ReloadRefused(Exception):  # noqa: N818  (names what happened)
    """The new config cannot be applied; the old one keeps running."""


class Reloader:
    """Applies a changed config file to a running daemon (see the module docstring)."""

    def __init__(self, path: str, config: Config, parts: Parts, root: Supervisor) -> None:
        self.path = path
        self.config = config
        self.parts = parts
        self.root = root

    def _check(self) -> Config:
        try:
            new = load_checked_config(self.path)
        except ConfigError as error:
            raise ReloadRefused(f"{self.path}: {error}") from None
        for name in RESTART_ONLY:
            if getattr(new, name) != getattr(self.config, name):
                what = name if name == "currency" else f"[{name}]"  # a key, or a table
                raise ReloadRefused(
                    f"{what} changed, which needs a restart; reload applies rates, carriers "
                    "and pools only"
                )
        return new

    async def reload(self) -> str:
        """Applies the file; returns what changed. Raises ReloadRefused (nothing changed)."""
        new = self._check()
        changes: list[str] = []
        context = self.parts.context
        if new.rates != self.config.rates:
            context.rates = rate_card(new, context.currency)
            changes.append("rates changed")
        changes += await self._carriers(new)
        changes += await self._pools(new)
        self.config = new
        return "; ".join(changes) or "nothing changed"

    async def _carriers(self, new: Config) -> list[str]:
        old = {carrier.name: carrier for carrier in self.config.carriers}
        fresh = {carrier.name: carrier for carrier in new.carriers}
        changes = []
        context, sides = self.parts.context, self.parts.carriers
        for name in old.keys() - fresh.keys():
            await self.root.terminate_child(f"carrier.{name}")
            del sides[name]
            changes.append(f"carrier {name} removed")
        added = [c for c in new.carriers if c.name not in old or old[c.name] != c]
        if added:  # declaring what exists already is a no-op
            names = [c.name for c in added]
            await context.transport.declare(
                platform_topology(context.names, names, context.schedule)
            )
        for carrier in added:
            if carrier.name in old:
                await self.root.terminate_child(f"carrier.{carrier.name}")
            side = sides[carrier.name] = carrier_side(context, carrier)
            await self.root.start_child(carrier_branch(self.parts, side))
            changes.append(
                f"carrier {carrier.name} {'changed' if carrier.name in old else 'added'}"
            )
        context.routes = routes(new)
        context.carrier_rates = carrier_rates(new, context.currency)
        return changes

    async def _pools(self, new: Config) -> list[str]:
        old = {pool.name: pool for pool in effective_pools(self.config)}
        fresh = {pool.name: pool for pool in effective_pools(new)}
        changes = []
        for name in old.keys() - fresh.keys():
            await self.root.terminate_child(f"pool.{name}")
            changes.append(f"pool {name} removed")
        started = [pool for pool in fresh.values() if old.get(pool.name) != pool]
        context = self.parts.context
        await context.transport.declare(
            pools_topology(
                (pool for pool in started if pool.name not in old), context.names, context.schedule
            )
        )
        for index, pool in enumerate(effective_pools(new)):
            if pool not in started:
                continue
            if pool.name in old:
                await self.root.terminate_child(f"pool.{pool.name}")
                was = old[pool.name]
                what = f"{was.size} -> {pool.size} actors" if was.size != pool.size else "changed"
            else:
                what = "added"
            await self.root.start_child(pool_branch(self.parts, pool, index))
            changes.append(f"pool {pool.name} {what}")
        return changes
