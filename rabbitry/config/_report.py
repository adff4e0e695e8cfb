"""A validated config, told back as the daemon will run it: a one-line summary and JSON, secrets
masked in both. The pools shown are the effective ones (the config's and the platform's own it
does not override, `effective_pools`), so what is shown is what runs.

>>> from rabbitry.config import loads_config
>>> summary(loads_config("", environ={})).partition(", broker")[0]
'0 carriers, 3 pools (reports x1, inbound x1, callbacks x2)'
"""

import msgspec

import conf
from rabbitry.config._pools import effective_pools
from rabbitry.config._schema import Config

__all__ = ["config_json", "summary"]


def summary(config: Config) -> str:
    """One line: carriers and pools by name, the broker and store URLs masked, the bind."""

    def named(count: int, noun: str, names: list[str]) -> str:
        text = f"{count} {noun}{'' if count == 1 else 's'}"
        return f"{text} ({', '.join(names)})" if names else text

    pools = effective_pools(config)
    return ", ".join(
        (
            named(len(config.carriers), "carrier", [carrier.name for carrier in config.carriers]),
            named(len(pools), "pool", [f"{pool.name} x{pool.size}" for pool in pools]),
            f"broker {config.broker.url}",
            f"store {config.store.url}",
            f"http {config.http.bind}",
        )
    )


def config_json(config: Config) -> bytes:
    """The config as indented JSON (`conf.config_json`: every default filled in, decimals as
    strings, secrets masked), its pools the effective ones."""
    return conf.config_json(msgspec.structs.replace(config, pools=effective_pools(config)))
