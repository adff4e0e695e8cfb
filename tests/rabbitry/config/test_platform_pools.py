"""The platform's own pools: one source (PLATFORM_POOLS), run when the config leaves them out,
replaced by a pool the config declares on the same queue, and shown by `rabbitry config check`."""

import json
from pathlib import Path

import msgspec

import conf
from rabbitry.config import PLATFORM_POOLS, config_json, effective_pools, loads_config, summary

SHIPPED = Path(conf.__file__).parent / "rabbitry.toml"


def test_a_config_without_pools_runs_the_platform_pools() -> None:
    config = loads_config("", environ={})
    assert effective_pools(config) == PLATFORM_POOLS
    assert [(pool.name, pool.queue, pool.size) for pool in PLATFORM_POOLS] == [
        ("reports", "sms.reports", 1),
        ("inbound", "sms.inbound", 1),
        ("callbacks", "sms.callbacks", 2),
    ]


def test_a_pool_on_a_platform_queue_replaces_the_default_and_own_pools_follow() -> None:
    text = """
    [[pools]]
    name = "thumbnails"
    actor = "myapp.thumbnails:Thumbnailer"
    [[pools]]
    name = "reports"
    actor = "rabbitry.platform:ReportsActor"
    queue = "sms.reports"
    size = 3
    """
    config = loads_config(text, environ={})
    assert [(pool.name, pool.size) for pool in effective_pools(config)] == [
        ("inbound", 1),
        ("callbacks", 2),
        ("thumbnails", 1),
        ("reports", 3),
    ]
    assert "4 pools (inbound x1, callbacks x2, thumbnails x1, reports x3)" in summary(config)


def test_the_shipped_example_scales_callbacks_keeping_its_other_settings() -> None:
    lines = SHIPPED.read_text().splitlines()
    start = lines.index("# [[pools]]")  # the first commented pool: the platform's, scaled
    example = []
    for line in lines[start:]:
        if not line.startswith("# "):
            break
        example.append(line.removeprefix("# "))
    config = loads_config("\n".join(example), environ={})
    reports, inbound, callbacks = PLATFORM_POOLS
    assert effective_pools(config) == (
        reports,
        inbound,
        msgspec.structs.replace(callbacks, size=4),
    )


def test_config_check_shows_the_pools_that_run() -> None:
    config = loads_config(SHIPPED.read_text(), environ={})
    assert config.pools == ()
    shown = json.loads(config_json(config))["pools"]
    assert shown == json.loads(msgspec.json.encode(PLATFORM_POOLS))
    assert "3 pools (reports x1, inbound x1, callbacks x2)" in summary(config)
