"""Loading the platform's config: TOML file -> environment overrides -> validated, frozen `Config`.

    config = load_config("conf/rabbitry.toml")              # reads os.environ
    config = load_config(path, environ={"RABBITRY_BROKER_URL": "memory://"})
    config.http.admin_key.reveal()                           # the only way to a secret

The environment wins over the file, for these keys only (`ENVIRONMENT`):

    RABBITRY_BROKER_URL  -> broker.url       RABBITRY_HTTP_BIND   -> http.bind
    RABBITRY_STORE_URL   -> store.url        RABBITRY_ADMIN_KEY   -> http.admin_key
    RABBITRY_LOG_FORMAT  -> logging.format   RABBITRY_LOG_LEVEL   -> logging.level
    RABBITRY_WEBHOOK_SIGNING_KEY -> webhooks.signing_key

RABBITRY_BROKER_URL takes the nodes of a RabbitMQ cluster comma-separated
(`amqp://u:p@rabbit1/v,amqp://u:p@rabbit2/v`), as `[broker] url` takes a list; each URL is
checked and masked on its own (`broker.url[1] must be an amqp:// or amqps:// URL ...`).

A set variable counts even when empty (then validation says why that is wrong). A value that
came from the environment is named with its variable in errors: `http.bind (from
RABBITRY_HTTP_BIND) must be "host:port" (got "8080")`.

Carrier secrets: in `[carriers.options]`, `KEY_env = "VAR"` puts the value of the environment
variable VAR under KEY (as a Secret), so the file holds no password. Options whose name is a
secret name (`conf.is_secret_name`: it contains key, secret, token, password, authorization,
signature..., in any case) are handed over as Secret too, at any depth of the table: a nested
`request.api_key`, a header `X-Api-Secret` under `headers`, the strings of a list so named, and
the `value` of a table itself so named (`auth = {kind = "header", header = "X-Key", value =
"..."}`). `NAME_env` keys below the top are the plugin's to read (their values name variables).
So `rabbitry config check`, its `--json` and the logs show them as `***`.

The steps and their order are `conf.Loader`'s; the platform's rules are in `_check.py`.

Raises ConfigError (a ValueError) with one sentence: the key path, the offending value (secrets
masked) and what was expected; a missing or unreadable file, or TOML syntax errors (with line
and column) are ConfigErrors too.
"""

import os
from collections.abc import Mapping
from typing import Any

import msgspec

from conf import (
    ConfigError,
    KeyPath,
    Loader,
    Secret,
    is_secret_name,
    key_path,
    named_queues,
    show,
)
from rabbitry.config._check import money_problems, problems
from rabbitry.config._schema import Carrier, Config

__all__ = ["ENVIRONMENT", "load_config", "loads_config"]

ENVIRONMENT: Mapping[str, tuple[str, str]] = {
    "RABBITRY_BROKER_URL": ("broker", "url"),
    "RABBITRY_STORE_URL": ("store", "url"),
    "RABBITRY_HTTP_BIND": ("http", "bind"),
    "RABBITRY_ADMIN_KEY": ("http", "admin_key"),
    "RABBITRY_LOG_FORMAT": ("logging", "format"),
    "RABBITRY_LOG_LEVEL": ("logging", "level"),
    "RABBITRY_WEBHOOK_SIGNING_KEY": ("webhooks", "signing_key"),
}


def load_config(path: str | os.PathLike[str], *, environ: Mapping[str, str] = os.environ) -> Config:
    """Read, override from `environ` and validate the TOML config file at `path`.

    Raises:
        ConfigError: the file is missing, unreadable or not TOML, or a value is not valid.
    """
    return _LOADER.load(path, environ=environ)


def loads_config(
    text: str, *, environ: Mapping[str, str] = os.environ, source: str = "<string>"
) -> Config:
    """Like `load_config`, for TOML `text`; `source` names it in file-level errors.

    Raises:
        ConfigError: as `load_config`.
    """
    return _LOADER.loads(text, environ=environ, source=source)


def _prepare(config: Config, environ: Mapping[str, str]) -> Config:
    """Carrier options with their secrets, pools with their queues named."""
    carriers = tuple(
        msgspec.structs.replace(
            carrier, options=_options(("carriers", index, "options"), carrier, environ)
        )
        for index, carrier in enumerate(config.carriers)
    )
    return msgspec.structs.replace(config, carriers=carriers, pools=named_queues(config.pools))


def _options(path: KeyPath, carrier: Carrier, environ: Mapping[str, str]) -> dict[str, Any]:
    def fail(rule: str, key: str) -> ConfigError:
        where = key_path((*path, key))
        return ConfigError(f"{where} {rule}", key=where)

    options: dict[str, Any] = {}
    for key, value in carrier.options.items():
        if key.endswith("_env") and len(key) > len("_env"):
            target = key.removesuffix("_env")
            if not isinstance(value, str) or not value:
                raise fail(f"must name an environment variable (got {show(value)})", key)
            if target in carrier.options:
                raise fail(f"and {key_path((*path, target))} are both set; keep one", key)
            if value not in environ:
                raise fail(f"names the environment variable {show(value)}, which is not set", key)
            options[target] = Secret(environ[value])
        else:
            options[key] = _secret_option(key, value, within_secret=False)
    return options


def _secret_option(name: str, value: Any, *, within_secret: bool) -> Any:
    """`value` of option `name`, every secret in it a `Secret` (see the module docstring)."""
    secret = is_secret_name(name) or (within_secret and name == "value")
    if isinstance(value, str):
        return Secret(value) if secret else value
    if isinstance(value, list):
        return [_secret_option(name, item, within_secret=within_secret) for item in value]
    if isinstance(value, dict):
        return {
            key: item
            if key.endswith("_env")
            else _secret_option(key, item, within_secret=is_secret_name(name))
            for key, item in value.items()
        }
    return value


_LOADER = Loader(
    Config,
    environment=ENVIRONMENT,
    raw_checks=(money_problems,),
    prepare=_prepare,
    checks=(problems,),
)
