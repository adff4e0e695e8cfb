"""Loading a config: TOML file -> environment overrides -> validated, frozen schema instance.

A `Loader` is built once per schema, with the application's environment variables and rules:

    LOADER = Loader(
        Settings,                                               # a Table (see conf._schema)
        environment={"THUMBS_BROKER_URL": ("broker", "url")},
        checks=(settings_problems,),
    )
    settings = LOADER.load("thumbs.toml")                       # reads os.environ
    settings = LOADER.loads(text, environ={"THUMBS_BROKER_URL": "memory://"})
    settings.broker.url.reveal()                                # the only way to a secret

The steps, in order; the first problem found is raised:

1. the TOML is read (a missing or unreadable file, or a syntax error with line and column, is a
   ConfigError about the file as a whole);
2. `environment` overrides: `{VARIABLE: (table, key)}`; a set variable wins over the file, even
   when empty (then validation says why that is wrong), and a value that came from the
   environment is named with its variable in errors: `broker.url (from THUMBS_BROKER_URL) must
   be an amqp://, amqps:// or memory:// URL (got "8080")`;
3. `raw_checks` see the TOML as written (`decimal_string_problems`: a float is refused before it
   becomes a number);
4. msgspec decodes into the schema (types, bounds, unknown and missing keys; strings become
   `Secret`/`SecretURL` where the schema says so; a `SecretURLs` also takes a list of strings,
   joined with commas, which is how its environment variable writes a list);
5. `prepare` completes the decoded config (e.g. reads the environment variables the file names)
   and may raise a ConfigError naming the key;
6. `checks` apply the rules beyond types (`conf._check`).

Raises ConfigError (a ValueError) with one sentence: the key path, the offending value (secrets
masked) and what was expected.
"""

import os
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path as FilePath
from typing import Any, Generic, TypeVar

import msgspec

from conf._check import Problem
from conf._errors import ConfigError, KeyPath, key_path, show
from conf._schema import Table
from conf._secret import Secret, SecretURL, SecretURLs
from conf._translate import sentence, translate

__all__ = ["Loader"]

Schema = TypeVar("Schema", bound=Table)


class Loader(Generic[Schema]):
    """Reads TOML into a validated `schema` instance (see the module docstring for the steps).

    `environment` maps a variable to the `(table, key)` it overrides; `raw_checks` take the raw
    TOML (a dict) and `checks` the decoded config, each yielding `Problem`s; `prepare` takes the
    decoded config and the environment and returns the config to check.
    """

    def __init__(
        self,
        schema: type[Schema],
        *,
        environment: Mapping[str, tuple[str, str]] | None = None,
        raw_checks: Iterable[Callable[[Mapping[str, object]], Iterable[Problem]]] = (),
        prepare: Callable[[Schema, Mapping[str, str]], Schema] | None = None,
        checks: Iterable[Callable[[Schema], Iterable[Problem]]] = (),
    ) -> None:
        self.schema = schema
        self.environment: Mapping[str, tuple[str, str]] = dict(environment or {})
        self.raw_checks = tuple(raw_checks)
        self.prepare = prepare
        self.checks = tuple(checks)

    def load(
        self, path: str | os.PathLike[str], *, environ: Mapping[str, str] = os.environ
    ) -> Schema:
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
        return self.loads(text, environ=environ, source=source)

    def loads(
        self, text: str, *, environ: Mapping[str, str] = os.environ, source: str = "<string>"
    ) -> Schema:
        """Like `load`, for TOML `text`; `source` names it in file-level errors.

        Raises:
            ConfigError: as `load`.
        """
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            reason = str(exc)
            raise ConfigError(
                f"{source} is not valid TOML: {reason[:1].lower()}{reason[1:]}", source=source
            ) from None
        labels = self._apply_environment(raw, environ)

        def first(problems: Iterable[Problem]) -> None:
            for where, rule in problems:
                raise ConfigError(sentence(where, rule, labels), key=key_path(where), source=source)

        for raw_check in self.raw_checks:
            first(raw_check(raw))
        try:
            config = msgspec.convert(raw, self.schema, strict=True, dec_hook=_decode_secret)
        except msgspec.ValidationError as exc:
            where, message = translate(exc, raw, labels, self.schema)
            raise ConfigError(message, key=key_path(where), source=source) from None
        if self.prepare is not None:
            try:
                config = self.prepare(config, environ)
            except ConfigError as error:
                raise ConfigError(str(error), key=error.key, source=source) from None
        for check in self.checks:
            first(check(config))
        return config

    def _apply_environment(
        self, raw: dict[str, Any], environ: Mapping[str, str]
    ) -> dict[KeyPath, str]:
        labels: dict[KeyPath, str] = {}
        for variable, (table, key) in self.environment.items():
            if variable in environ and isinstance(raw.setdefault(table, {}), dict):
                raw[table][key] = environ[variable]
                labels[(table, key)] = variable
        return labels


def _decode_secret(kind: type, value: object) -> object:
    if kind is SecretURLs and isinstance(value, list):
        if all(isinstance(item, str) for item in value):
            return SecretURLs(",".join(value))
        raise TypeError("Expected `str` or an array of `str`")
    if kind in (Secret, SecretURL, SecretURLs):
        if isinstance(value, str):
            return kind(value)
        raise TypeError("Expected `str`")  # msgspec reports it at the key's path
    raise NotImplementedError(kind)  # pragma: no cover - a schema has no other custom type
