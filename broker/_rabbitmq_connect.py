"""Connecting to RabbitMQ: one of a cluster's URLs, in order, each within a deadline; a channel
opened within a deadline; the heartbeat asked of the broker.

:class:`~broker._rabbitmq_link.Link` connects through :func:`connect_first`::

    index, connection = await connect_first(urls, shown, connect_order(len(urls), None),
                                            name="rabbitry", deadline=10.0)

With several URLs (the nodes of one RabbitMQ cluster) they are tried in list order the first
time, and after a loss starting with the URL after the one whose connection was lost, wrapping
around, so the node that just went away is tried last (:func:`connect_order`). In order rather
than shuffled: which node a daemon talks to stays predictable from its config and its logs, and
an operator who wants daemons spread over the nodes lists the URLs in a different order on each
host. Each attempt has the deadline to the opened connection: a node that accepts TCP but never
answers (a black hole) costs that long, then the next URL is tried.

Raises TransportClosed (naming every URL tried, masked, and why each failed) when none answers.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Sequence
from typing import cast

import aiormq

from broker._errors import TransportClosed
from conf import mask_url

__all__ = ["HEARTBEAT", "connect_first", "connect_order", "open_channel", "with_heartbeat"]

HEARTBEAT = 15
"""Seconds between AMQP heartbeats, unless the URL says otherwise."""


def with_heartbeat(url: str, seconds: int) -> str:
    """`url` with ``heartbeat=seconds`` in its query, unless it has a heartbeat already."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    if any(name == "heartbeat" for name, _ in query):
        return url
    query.append(("heartbeat", str(seconds)))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def connect_order(count: int, last: int | None) -> list[int]:
    """The order in which to try `count` URLs: list order the first time (`last` None), else
    starting after `last`, the URL of the connection just lost, so that one comes last.

    >>> connect_order(3, None), connect_order(3, 1), connect_order(1, 0)
    ([0, 1, 2], [2, 0, 1], [0])
    """
    first = 0 if last is None else (last + 1) % count
    return [(first + step) % count for step in range(count)]


async def connect_first(
    urls: Sequence[str],
    shown: Sequence[str],
    order: Sequence[int],
    *,
    name: str,
    deadline: float,
) -> tuple[int, aiormq.Connection]:
    """The index of the first URL in `order` that answers within `deadline`, and its connection.

    `shown` are the URLs as the caller wrote them (what errors name, masked). Raises
    TransportClosed naming every URL tried and why each failed.
    """
    failures: list[tuple[str, Exception]] = []
    for index in order:
        try:
            connection = await asyncio.wait_for(_open(urls[index], name), deadline)
        except Exception as exc:  # noqa: BLE001 - reported below, with every URL tried
            failures.append((shown[index], exc))
            continue
        return index, connection
    raise _unreachable(failures, deadline)


async def _open(url: str, name: str) -> aiormq.Connection:
    connection: aiormq.Connection = await aiormq.connect(
        url, client_properties={"connection_name": name}
    )
    return connection


def _unreachable(failures: list[tuple[str, Exception]], deadline: float) -> TransportClosed:
    why = [_describe(exc, deadline) for _, exc in failures]
    if len(failures) == 1:
        hint = (
            "check the broker's TLS certificate: its authority (?cafile=PEM in the URL, else "
            "the system's) and the host name it is issued for"
            if "CERTIFICATE_VERIFY_FAILED" in why[0]
            else "is the broker running (rabbitmq-server -detached)?"
        )
        error = TransportClosed(
            f"cannot connect to RabbitMQ at {mask_url(failures[0][0])!r}: {why[0]}; {hint}"
        )
    else:
        tried = "; ".join(
            f"{mask_url(url)} {reason}" for (url, _), reason in zip(failures, why, strict=True)
        )
        error = TransportClosed(
            f"cannot connect to RabbitMQ at any of its {len(failures)} URLs ({tried}); is one "
            f"of the cluster's nodes running?"
        )
    error.__cause__ = failures[-1][1]
    return error


def _describe(exc: BaseException, deadline: float) -> str:
    """Why one connection attempt failed, as `Type: message`."""
    if isinstance(exc, TimeoutError) and not str(exc):
        return f"TimeoutError: no answer within {deadline!r} s"
    return f"{type(exc).__name__}: {exc}"


async def open_channel(
    connection: aiormq.Connection, *, confirms: bool, deadline: float
) -> aiormq.Channel:
    """A new channel on `connection` (in confirm mode if `confirms`), opened within `deadline`
    seconds.

    aiormq bounds ``channel.open`` by its timeout but not the ``confirm.select`` after it, nor
    its wait for the connection: on a connection that went silent those would wait for ever, so
    the whole opening is bounded here (asyncio.TimeoutError past it).
    """
    opening = connection.channel(publisher_confirms=confirms, timeout=deadline)
    return cast("aiormq.Channel", await asyncio.wait_for(opening, deadline))
