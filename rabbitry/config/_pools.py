"""The platform's own pools: what the daemon runs for delivery reports, inbound SMS and customer
callbacks, with the settings it runs them with when the config leaves them out.

    effective_pools(loads_config(""))        # PLATFORM_POOLS: reports x1, inbound x1, callbacks x2

A config scales one by declaring a pool that consumes the same queue (its whole table: a pool
declared in the file takes nothing from these):

    [[pools]]
    name = "callbacks"
    actor = "rabbitry.platform:CallbackActor"
    queue = "sms.callbacks"
    size = 4
    prefetch = 64
    intensity = 10
    period = 30.0

`effective_pools` is what the daemon runs and reloads, and what `rabbitry config check` shows.
"""

from conf import Pool
from rabbitry.config._schema import Config

__all__ = ["PLATFORM_POOLS", "effective_pools"]

PLATFORM_POOLS = (
    Pool(
        name="reports",
        actor="rabbitry.platform:ReportsActor",
        queue="sms.reports",
        prefetch=16,
        intensity=10,
        period=30.0,
    ),
    Pool(
        name="inbound",
        actor="rabbitry.platform:InboundActor",
        queue="sms.inbound",
        prefetch=16,
        intensity=10,
        period=30.0,
    ),
    Pool(
        name="callbacks",
        actor="rabbitry.platform:CallbackActor",
        queue="sms.callbacks",
        size=2,
        prefetch=64,
        intensity=10,
        period=30.0,
    ),
)
"""The platform's own pools, with their settings; one the config leaves out runs with these."""


def effective_pools(config: Config) -> tuple[Pool, ...]:
    """The config's pools, after each platform pool whose queue the config does not consume."""
    queues = {pool.queue or pool.name for pool in config.pools}
    defaults = tuple(pool for pool in PLATFORM_POOLS if pool.queue not in queues)
    return defaults + tuple(config.pools)
