"""The URLs customers give the platform to call (`callback_url` of a send, `webhook_url` of an
account), checked when given.

    url = await check_customer_url("callback_url", body_url, allow_private=False)
    # InvalidField("callback_url must point to a public address (127.0.0.1 is a loopback
    #               address)", field="callback_url")

A customer's URL is an absolute `http://` or `https://` URL of at most `MAX_URL_LENGTH`
printable ASCII characters (no space, no control character anywhere: an international domain
name is written in punycode, the rest percent-encoded) that parses completely: a host that is a
domain name, an IPv4 address or an IPv6 address in brackets (without a zone), a port from 1 to
65535 if there is one, and httpx (which sends the callbacks) reads it too.

Unless `allow_private`, its host must not be, or resolve to, an address webhooks may not reach
(rabbitry.platform._addresses): the name is resolved now, within `RESOLVE_TIMEOUT` seconds, off
the trio loop. A name that does not resolve now (no such name, no answer in time) is accepted:
the callbacks worker resolves and checks again before each connection, and connects only to an
address it checked, so the answer given now protects nothing on its own; refusing would turn a
slow or failing resolver of ours (or a DNS record the customer publishes later) into the
customer's 422, and a name that never resolves costs its owner failed callbacks, nobody else
anything. Only a name that resolves, now, to a refused address is refused now.

Raises `InvalidField` (422 `invalid_field`) naming the field, in one sentence.
"""

from __future__ import annotations

import re

import httpx
import trio

from conf import mask_url
from rabbitry.gateway import InvalidField
from rabbitry.platform._addresses import (
    AddressRefused,
    UnresolvedHost,
    allowed_addresses,
    ip_literal,
)

MAX_URL_LENGTH = 2048
RESOLVE_TIMEOUT = 2.0
"""Seconds a customer's host may take to resolve when the URL is given (then it is accepted)."""

_PRINTABLE = re.compile(r"[!-~]+")
_URL = re.compile(r"(?P<scheme>https?)://(?P<authority>[^/?#]*)(?P<rest>[/?#].*)?")
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
_PORT = re.compile(r"[0-9]{1,5}")
_SHOWN = 80  # characters of a refused URL shown back


async def check_customer_url(field: str, url: str, *, allow_private: bool) -> str:
    """`url`, if a customer may give it as `field` (see the module docstring).

    Raises:
        InvalidField: naming `field`: the URL is malformed, or its host is (or resolves to) an
            address webhooks may not reach.
    """
    host, port = parse_customer_url(field, url)
    if allow_private:
        return url
    try:
        with trio.move_on_after(RESOLVE_TIMEOUT):
            await allowed_addresses(host, port, allow_private=False)
    except AddressRefused as error:
        message = f"{field} must point to a public address ({error})"
        raise InvalidField(message, field=field) from None
    except UnresolvedHost:
        pass  # checked again before each connection (see the module docstring)
    return url


def parse_customer_url(field: str, url: str) -> tuple[str, int]:
    """(host, port) of `url`, if it is well formed (see the module docstring); the host without
    IPv6 brackets, the port the scheme's when the URL has none.

    Raises:
        InvalidField: naming `field`, when `url` is not a well-formed http or https URL.
    """
    if len(url) > MAX_URL_LENGTH:
        raise _invalid(field, f"must be at most {MAX_URL_LENGTH:,} characters (got {len(url):,})")
    if not _PRINTABLE.fullmatch(url):
        raise _invalid(
            field,
            f"must be printable ASCII without spaces or control characters (got {_shown(url)});"
            " percent-encode the rest and write an international domain name in punycode",
        )
    parts = _URL.fullmatch(url)
    if parts is None:
        raise _invalid(field, f"must be an absolute http:// or https:// URL (got {_shown(url)})")
    host, port = _host_and_port(parts["authority"].rpartition("@")[2])
    if host is None:
        raise _invalid(
            field,
            "must name a host: a domain name, an IPv4 address or an IPv6 address in brackets"
            f" (got {_shown(url)})",
        )
    if port is None:
        raise _invalid(field, f"must have a port from 1 to 65535, if any (got {_shown(url)})")
    try:
        httpx.URL(url)
    except httpx.InvalidURL as error:  # the sender's own reading must agree
        raise _invalid(field, f"is not a URL the daemon can call ({error})") from None
    return host, port or (443 if parts["scheme"] == "https" else 80)


def _host_and_port(netloc: str) -> tuple[str | None, int | None]:
    """(host or None if malformed, port: 0 when absent, None when malformed)."""
    if netloc.startswith("["):
        literal, bracket, after = netloc[1:].partition("]")
        address = ip_literal(literal) if "%" not in literal else None
        host = literal if bracket and address is not None and address.version == 6 else None
        return host, _port(after) if host is not None else 0
    name, colon, port = netloc.partition(":")
    host = name if _NAME.fullmatch(name) and len(name.rstrip(".")) <= 253 else None
    return host, _port(colon + port)


def _port(text: str) -> int | None:
    if not text:
        return 0
    digits = text.removeprefix(":")
    if text.startswith(":") and _PORT.fullmatch(digits) and 1 <= int(digits) <= 65535:
        return int(digits)
    return None


def _invalid(field: str, rule: str) -> InvalidField:
    return InvalidField(f"{field} {rule}", field=field)


def _shown(url: str) -> str:
    """`url` quoted (escapes and all) and shortened, without a user, a password or a query (a
    token may hide there): safe in a log line."""
    base, question, _ = url.partition("?")
    shown = mask_url(base.partition("#")[0]) + ("?..." if question else "")
    return repr(shown if len(shown) <= _SHOWN else shown[:_SHOWN] + "...")
