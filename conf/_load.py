"""Loading a config: TOML file -> environment overrides -> validated, frozen `Config`.

    config = load_config("conf/rabbitry.toml")              # reads os.environ
    config = load_config(path, environ={"RABBITRY_BROKER_URL": "memory://"})
    config.http.admin_key.reveal()                           # the only way to a secret

The environment wins over the file, for these keys only (`ENVIRONMENT`):

    RABBITRY_BROKER_URL  -> broker.url       RABBITRY_HTTP_BIND   -> http.bind
    RABBITRY_STORE_URL   -> store.url        RABBITRY_ADMIN_KEY   -> http.admin_key
    RABBITRY_LOG_FORMAT  -> logging.format   RABBITRY_LOG_LEVEL   -> logging.level

A set variable counts even when empty (then validation says why that is wrong). A value that
came from the environment is named with its variable in errors: `http.bind (from
RABBITRY_HTTP_BIND) must be "host:port" (got "8080")`.

Carrier secrets: in `[carriers.options]`, `KEY_env = "VAR"` puts the value of the environment
variable VAR under KEY (as a Secret), so the file holds no password. Options whose name ends in
password, passwd, secret, token, key, passphrase or credentials are handed over as Secret too.

Raises ConfigError (a ValueError) with one sentence: the key path, the offending value (secrets
masked) and what was expected; a missing or unreadable file, or TOML syntax errors (with line
and column) are ConfigErrors too.
"""

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path as FilePath
from typing import Any

import msgspec

from conf._check import decimal_problems, problems
from conf._errors import ConfigError, Path, key_path, show
from conf._schema import Carrier, Config
from conf._secret import Secret, SecretURL
from conf._translate import sentence, translate

__all__ = ["ENVIRONMENT", "load_config", "loads_config"]

ENVIRONMENT: Mapping[str, tuple[str, str]] = {
    "RABBITRY_BROKER_URL": ("broker", "url"),
    "RABBITRY_STORE_URL": ("store", "url"),
    "RABBITRY_HTTP_BIND": ("http", "bind"),
    "RABBITRY_ADMIN_KEY": ("http", "admin_key"),
    "RABBITRY_LOG_FORMAT": ("logging", "format"),
    "RABBITRY_LOG_LEVEL": ("logging", "level"),
}
SECRET_SUFFIXES = ("password", "passwd", "secret", "token", "key", "passphrase", "credentials")


def load_config(path: str | os.PathLike[str], *, environ: Mapping[str, str] = os.environ) -> Config:
    """Read, override from `environ` and validate the TOML config file at `path`.

    Raises:
        ConfigError: the file is missing, unreadable or not TOML, or a value is not valid.
    """
    source = os.fspath(path)
    try:
        data = FilePath(source).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file {show(source)} does not exist", source=source) from None
    except OSError as exc:
        raise ConfigError(
            f"config file {show(source)} cannot be read ({exc.strerror or exc})", source=source
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {show(source)} is not UTF-8 text (byte {exc.start})", source=source
        ) from None
    return loads_config(text, environ=environ, source=source)


def loads_config(
    text: str, *, environ: Mapping[str, str] = os.environ, source: str = "<string>"
) -> Config:
    """Like `load_config`, for TOML `text`; `source` names it in file-level errors.

    Raises:
        ConfigError: as `load_config`.
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        reason = str(exc)
        raise ConfigError(
            f"{source} is not valid TOML: {reason[:1].lower()}{reason[1:]}", source=source
        ) from None
    labels = _apply_environment(raw, environ)
    for where, rule in decimal_problems(raw):
        raise ConfigError(sentence(where, rule, labels), key=key_path(where), source=source)
    try:
        config = msgspec.convert(raw, Config, strict=True, dec_hook=_decode_secret)
    except msgspec.ValidationError as exc:
        where, message = translate(exc, raw, labels)
        raise ConfigError(message, key=key_path(where), source=source) from None
    carriers = []
    for index, carrier in enumerate(config.carriers):
        options = _options(("carriers", index, "options"), carrier, environ, source)
        carriers.append(msgspec.structs.replace(carrier, options=options))
    pools = tuple(
        pool if pool.queue else msgspec.structs.replace(pool, queue=pool.name)
        for pool in config.pools
    )
    config = msgspec.structs.replace(config, carriers=tuple(carriers), pools=pools)
    for where, rule in problems(config):
        raise ConfigError(sentence(where, rule, labels), key=key_path(where), source=source)
    return config


def _apply_environment(raw: dict[str, Any], environ: Mapping[str, str]) -> dict[Path, str]:
    labels: dict[Path, str] = {}
    for variable, (table, key) in ENVIRONMENT.items():
        if variable in environ and isinstance(raw.setdefault(table, {}), dict):
            raw[table][key] = environ[variable]
            labels[(table, key)] = variable
    return labels


def _decode_secret(kind: type, value: object) -> object:
    if kind in (Secret, SecretURL):
        if isinstance(value, str):
            return kind(value)
        raise TypeError("Expected `str`")  # msgspec reports it at the key's path
    raise NotImplementedError(kind)  # pragma: no cover - the schema has no other custom type


def _options(
    path: Path, carrier: Carrier, environ: Mapping[str, str], source: str
) -> dict[str, Any]:
    def fail(rule: str, key: str) -> ConfigError:
        where = key_path((*path, key))
        return ConfigError(f"{where} {rule}", key=where, source=source)

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
        elif isinstance(value, str) and key.lower().endswith(SECRET_SUFFIXES):
            options[key] = Secret(value)
        else:
            options[key] = value
    return options
