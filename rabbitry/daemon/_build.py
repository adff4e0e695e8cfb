"""What the daemon builds from a config: once at start, and again on every SIGHUP reload.

    config = load_checked_config("conf/rabbitry.toml")   # validated, plugins and actors loaded
    context.rates = rate_card(config, currency)
    context.routes, context.carrier_rates = routes(config), carrier_rates(config, currency)
    sides = {c.name: carrier_side(context, c) for c in config.carriers}

Start-up (`run_daemon`) and reload (`Reloader`) both build through these functions, so a reload
builds exactly what a restart with the new file would.
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import ssl

from actors import Actor
from conf import ConfigError, resolve_import_path
from rabbitry.billing import RateCard
from rabbitry.carriers import PluginError, load_connector
from rabbitry.compat import install_renamed_modules, log_deprecated, renamed_path
from rabbitry.config import Carrier, Config, load_config
from rabbitry.platform import (
    SIGNING_KEY_NAME,
    AsyncRecords,
    CarrierSide,
    Context,
    reported_final,
)

__all__ = [
    "carrier_rates",
    "carrier_side",
    "check_config",
    "import_actor",
    "load_checked_config",
    "rate_card",
    "routes",
    "server_tls",
    "webhook_key",
]

_log = logging.getLogger("rabbitry")


def load_checked_config(path: str | os.PathLike[str]) -> Config:
    """The config file at `path`, validated and checked as `check_config` does.

    Raises:
        ConfigError: the file is not a valid config, a carrier's plugin or options are refused,
            or a pool's actor class cannot be imported.
    """
    config = load_config(path)
    check_config(config)
    return config


def check_config(config: Config) -> None:
    """What a config must pass beyond its schema before anything starts (or reloads): every
    carrier's plugin loads and takes its options, every pool's actor class imports, the HTTPS
    certificate and key load.

    Raises:
        ConfigError: naming the key (`carriers[0].plugin`, `pools[1].actor`...).
    """
    for index, carrier in enumerate(config.carriers):
        try:
            load_connector(carrier.plugin)(carrier.name, carrier.options)
        except PluginError as error:
            key = f"carriers[{index}].plugin"
            raise ConfigError(f"{key}: {error}", key=key) from None
        except ValueError as error:
            raise ConfigError(str(error), key=f"carriers[{index}].options") from None
    for index, pool in enumerate(config.pools):
        import_actor(pool.actor, f"pools[{index}].actor")
    server_tls(config)


def server_tls(config: Config) -> ssl.SSLContext | None:
    """The TLS context the HTTP API serves HTTPS with, when `[http] certfile` and `keyfile` are
    set (HTTP/1.1, the defaults of `ssl.create_default_context` for a server).

    Raises:
        ConfigError: naming `http.certfile` when the pair cannot be loaded.
    """
    certfile, keyfile = config.http.certfile, config.http.keyfile
    if certfile is None or keyfile is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as error:
        raise ConfigError(
            f"http.certfile {certfile!r} and http.keyfile {keyfile!r} cannot serve HTTPS"
            f" ({error}); give the PEM certificate chain and its unencrypted key",
            key="http.certfile",
        ) from None
    context.set_alpn_protocols(["http/1.1"])
    return context


def import_actor(path: str, where: str) -> type[Actor]:
    """The actor class at "package.module:ClassName"; raises ConfigError naming `where`.

    An old path of one of Rabbitry's own classes (`actors.platform:ReportsActor`) still works,
    logged as deprecated (rabbitry.compat).
    """
    install_renamed_modules()  # the user's module may import Rabbitry's old names too
    new = renamed_path(path)
    if new is not None:
        log_deprecated(path, new, where=where)
        path = new
    found = resolve_import_path(path, key=where)
    if not (isinstance(found, type) and issubclass(found, Actor)):
        raise ConfigError(f"{where} names {path!r}, which is not an Actor class", key=where)
    return found


def rate_card(config: Config, currency: str) -> RateCard:
    """`[rates]`: the price per segment of every destination not priced by its carrier."""
    return RateCard.from_table(dict(config.rates), currency)


def carrier_rates(config: Config, currency: str) -> dict[str, RateCard]:
    """The per-route rate cards of the carriers that have their own `rates`."""
    return {
        carrier.name: RateCard.from_table(dict(carrier.rates), currency)
        for carrier in config.carriers
        if carrier.rates
    }


def routes(config: Config) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(carrier, its destination prefixes), in config order: the failover order of a route."""
    return tuple((carrier.name, tuple(carrier.prefixes)) for carrier in config.carriers)


def carrier_side(context: Context, carrier: Carrier) -> CarrierSide:
    """The carrier's connectors (its plugin, built with its options), one per link, and its
    limits; one more connector for the carrier's webhooks when the plugin takes them."""
    factory = load_connector(carrier.plugin)
    connectors = [factory(carrier.name, carrier.options) for _ in range(carrier.links)]
    standby = (
        factory(carrier.name, carrier.options) if hasattr(connectors[0], "handle_webhook") else None
    )
    return CarrierSide(
        carrier.name,
        connectors,
        standby=standby,
        marks=context.records.mark,
        marked=context.records.messages_for,
        reported=functools.partial(reported_final, context.records),
        publisher=context.publisher,
        accounts=context.accounts,
        names=context.names,
        schedule=context.schedule,
        tps=carrier.tps,
        window=carrier.window,
        max_attempts=context.schedule.max_attempts,
    )


async def webhook_key(config: Config, records: AsyncRecords) -> bytes:
    """The master key of the accounts' webhook secrets: `[webhooks] signing_key`, or else the key
    the records keep (generated by the first daemon that needed it, so every daemon on the store
    signs alike), with a warning that the database then holds it."""
    if config.webhooks.signing_key is not None:
        return config.webhooks.signing_key.reveal().encode()
    _log.warning(
        "webhooks.signing_key is not set: webhook secrets are derived from a key kept in the"
        " store, so whoever reads the database can sign webhooks; set RABBITRY_WEBHOOK_SIGNING_KEY"
        " (python -c 'import secrets; print(secrets.token_urlsafe(32))')"
    )
    return (await records.generated_key(SIGNING_KEY_NAME, secrets.token_urlsafe(32))).encode()
