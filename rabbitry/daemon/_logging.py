"""Structured logs: one line per event, JSON lines or logfmt, secrets masked, message ids attached.

    configure_logging(config.logging, secrets=secrets_of(config))
    logger.info("restarting %r in %.3fs", path, 0.5,
                extra={"event": "restart", "path": path, "restarts": 1, "backoff": 0.5})

gives, in logfmt (the default)::

    ts=2026-01-01T00:00:00.250Z level=info logger=supervisor event=restart path=root/sim \
restarts=1 backoff=0.5 msg="restarting 'root/sim' in 0.500s"

and with `format = "json"` one object per line with the same keys. Every key passed in `extra`
is a field; a record without an `event` gets `event=log`. An exception is one escaped field,
`exc`, so a line is always one line.

A record logged while an actor handles a delivery (inside `ConsumerActor.handle`) also gets the
delivery's `message_id` and `correlation_id` (the `x-correlation-id` header, else the envelope's
correlation id, else its message id), unless the call passed its own.

Secrets: every value in `secrets` (as written, JSON-escaped, repr-escaped or percent-encoded),
the password of any `scheme://user:password@` URL and the value of any URL query parameter with a
secret name (`conf.mask_urls_in`) are replaced by `***` in every field of every line, whoever
logged it. `secrets_of(config)` lists the secrets of a config: the admin key, the broker and
store URL passwords and secret query parameters (`?sslpassword=`), and every carrier option that
is a `conf.Secret` (the config makes one of each option with a secret name, at any depth).
"""

import datetime
import json
import logging
import re
import sys
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

from actors import inbound_or_none
from conf import Logging, Secret, SecretURL, is_secret_name, mask_urls_in, split_urls
from rabbitry.config import Config

__all__ = ["configure_logging", "secrets_of"]

MASK = "***"
_HANDLER_NAME = "rabbitry.structured"  # how configure_logging finds the handler it installed

# The attributes every LogRecord has; any other attribute came from `extra` (or a filter).
_STANDARD = frozenset(
    {
        *logging.LogRecord("", logging.INFO, "", 0, "", (), None).__dict__,
        "message",
        "asctime",
        "taskName",
    }
)
_LOGFMT_PLAIN = re.compile(r"[^\s\"=\\\x00-\x1f\x7f]+")


def configure_logging(
    settings: Logging, *, secrets: Iterable[str] = (), stream: TextIO | None = None
) -> None:
    """Log every record of level `settings.level` or above to `stream` (stderr) as one line.

    Installs one handler on the root logger (replacing the one an earlier call installed; other
    handlers are left alone) and sets the root level. `secrets` are masked wherever they appear.
    """
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(StructuredFormatter(settings.format, secrets=secrets))
    handler.addFilter(InboundFilter())
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(settings.level.upper())


def secrets_of(config: Config, *, broker_url: str | None = None) -> list[str]:
    """The secret values of `config` (and of a `--broker` URL given instead of its own).

    The admin key, the passwords of the broker and store URLs (as written and decoded; each
    URL of a broker URL list), and
    every carrier option value that is a `conf.Secret`, at any depth of the options table.
    """
    found: list[str] = []
    if config.http.admin_key is not None:
        found.append(config.http.admin_key.reveal())
    if config.webhooks.signing_key is not None:
        found.append(config.webhooks.signing_key.reveal())
    for urls in (config.broker.url.reveal(), config.store.url.reveal(), broker_url or ""):
        for url in split_urls(urls):  # the broker's may be a list, one URL per cluster node
            found.extend(_url_passwords(url))
    for carrier in config.carriers:
        found.extend(_option_secrets(carrier.options))
    return [value for value in dict.fromkeys(found) if value]


def _url_passwords(url: str) -> list[str]:
    """The password of `url` and the values of its query parameters with a secret name."""
    try:
        parts = urllib.parse.urlsplit(url)
        password = parts.password
    except ValueError:
        return []  # not a URL the config would accept; `mask_urls_in` still masks its password
    found = [password, urllib.parse.unquote(password)] if password else []
    for name, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=False):
        if is_secret_name(name):
            found.append(value)
    return found


def _option_secrets(value: object) -> list[str]:
    if isinstance(value, SecretURL):
        return [value.reveal(), *_url_passwords(value.reveal())]
    if isinstance(value, Secret):
        return [value.reveal()]
    if isinstance(value, str) and "://" in value:
        return _url_passwords(value)  # an option's URL: its password, its `?api_key=`
    if isinstance(value, Mapping):
        return [secret for item in value.values() for secret in _option_secrets(item)]
    if isinstance(value, list | tuple):
        return [secret for item in value for secret in _option_secrets(item)]
    return []


class InboundFilter(logging.Filter):
    """Adds `message_id` and `correlation_id` of the delivery being handled, if any."""

    def filter(self, record: logging.LogRecord) -> bool:
        inbound = inbound_or_none()
        if inbound is not None:
            if not hasattr(record, "message_id"):
                record.message_id = inbound.message_id
            if not hasattr(record, "correlation_id"):
                record.correlation_id = inbound.correlation_id
        return True


class Masker:
    """Replaces every known secret, and every URL password, by `***`."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if secret:
                forms.update(_written_forms(secret))
        ordered = sorted(forms, key=len, reverse=True)  # a longer form first: no partial leak
        self._known = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __call__(self, text: str) -> str:
        text = mask_urls_in(text)
        return text if self._known is None else self._known.sub(MASK, text)


def _written_forms(secret: str) -> set[str]:
    """`secret` as it may appear in a line: as is, JSON- or repr-escaped, percent-encoded."""
    return {
        secret,
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        repr(secret)[1:-1],
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret),
    } - {""}


class StructuredFormatter(logging.Formatter):
    """Formats a record as one JSON object or one logfmt line, with secrets masked."""

    def __init__(self, style: str, *, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        if style not in ("json", "logfmt"):
            raise ValueError(f'logging.format must be "json" or "logfmt" (got {style!r})')
        self.style = style
        self.mask = Masker(secrets)

    def format(self, record: logging.LogRecord) -> str:
        fields = self.fields(record)
        if self.style == "json":
            return json.dumps(fields, ensure_ascii=False, default=str)
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in fields.items())

    def fields(self, record: logging.LogRecord) -> dict[str, Any]:
        """The line's fields in order: ts, level, logger, event, the extras, msg, exc; masked."""
        moment = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        fields: dict[str, Any] = {
            "ts": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": "log",
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                fields[key] = self._value(value)
        fields["msg"] = self.mask(record.getMessage())
        exc = ""
        if record.exc_info:
            exc = self.formatException(record.exc_info)
        elif record.exc_text:
            exc = record.exc_text
        if record.stack_info:
            exc = f"{exc}\n{self.formatStack(record.stack_info)}".strip("\n")
        if exc:
            fields["exc"] = self.mask(exc)
        if fields["event"] in (None, ""):
            fields["event"] = "log"
        return fields  # in insertion order: ts, level, logger and event come first

    def _value(self, value: object) -> object:
        if value is None:
            return None
        text = value if isinstance(value, str) else str(value)
        masked = self.mask(text)
        if isinstance(value, bool | int | float) and masked == text:
            return value  # a number stays a number unless it was a secret
        return masked


def _logfmt_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if _LOGFMT_PLAIN.fullmatch(text):
        return text
    return json.dumps(text, ensure_ascii=False)
