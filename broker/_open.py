"""Opening a transport by URL: ``memory://`` for the in-memory broker, ``amqp://`` for RabbitMQ.

::

    async with open_transport("amqp://guest:guest@127.0.0.1:5672/") as transport:
        ...
    async with open_transport("memory://demo") as a, open_transport("memory://demo") as b:
        ...  # a and b share the in-memory broker called "demo"

``memory://`` alone opens a private broker nobody else sees; ``memory://NAME`` shares the broker
``NAME`` with every transport of this process opened on the same name. ``amqp://`` and
``amqps://`` URLs go to the RabbitMQ transport (imported only then), with ``options`` passed on;
several of them (a sequence, or one string of comma-separated URLs) are the nodes of one RabbitMQ
cluster, and the transport fails over between them::

    async with open_transport("amqp://u:p@rabbit1:5672/v,amqp://u:p@rabbit2:5672/v") as transport:
        ...

Raises UnsupportedURL for any other scheme, or a list holding anything but amqp:// and amqps://
URLs, naming the URL with its user and password masked.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from broker._errors import UnsupportedURL
from broker._memory import memory_broker
from broker._memory_transport import open_memory_transport
from broker._transport import Transport
from conf import mask_url, split_url, split_urls

__all__ = ["open_transport"]

AMQP_SCHEMES = ("amqp", "amqps")


@asynccontextmanager
async def open_transport(url: str | Sequence[str], **options: Any) -> AsyncIterator[Transport]:
    """Open the transport ``url`` names for the ``async with`` block, and close it on exit.

    ``options`` go to the RabbitMQ transport (``close_timeout``, ``connection_name``...); the
    memory transport takes none. Raises UnsupportedURL for an unknown scheme, options given to a
    ``memory://`` URL, a list of URLs that are not all ``amqp://`` or ``amqps://``, or an
    ``amqp://`` URL when the RabbitMQ transport is not installed.
    """
    urls = split_urls(url) if isinstance(url, str) else tuple(url)
    if len(urls) != 1:
        async with _open_cluster(urls, options) as transport:
            yield transport
        return
    url = urls[0] if not isinstance(url, str) else url
    scheme, rest = split_url(url)
    if scheme == "memory":
        if options:
            raise UnsupportedURL(
                f"broker URL {mask_url(url)!r} takes no options (got {sorted(options)!r}); "
                f"drop them or use an amqp:// URL"
            )
        async with open_memory_transport(memory_broker(rest) if rest else None) as transport:
            yield transport
    elif scheme in AMQP_SCHEMES:
        open_rabbitmq_transport = _rabbitmq_opener(f"broker URL {mask_url(url)!r} needs")
        async with open_rabbitmq_transport(url, **options) as transport:
            yield transport
    else:
        raise UnsupportedURL(
            f"broker URL {mask_url(url)!r} has no supported scheme (got {scheme!r}); use "
            f"memory://[name] or amqp://user:password@host:5672/vhost"
        )


@asynccontextmanager
async def _open_cluster(urls: tuple[str, ...], options: dict[str, Any]) -> AsyncIterator[Transport]:
    """A list of URLs: the nodes of one RabbitMQ cluster."""
    shown = mask_url(",".join(urls))
    if not urls:
        raise UnsupportedURL("the list of broker URLs is empty; name at least one amqp:// URL")
    for one in urls:
        if split_url(one)[0] not in AMQP_SCHEMES:
            raise UnsupportedURL(
                f"broker URL {mask_url(one)!r} of the list {shown!r} is not an amqp:// or "
                f"amqps:// URL; a list of URLs names the nodes of one RabbitMQ cluster"
            )
    open_rabbitmq_transport = _rabbitmq_opener(f"broker URLs {shown!r} need")
    async with open_rabbitmq_transport(urls, **options) as transport:
        yield transport


def _rabbitmq_opener(what: str) -> Any:
    """`open_rabbitmq_transport`, imported only now, so that aiormq and its bridge thread load
    only for amqp:// URLs; `what` ("broker URL '...' needs") begins the error if it cannot be."""
    try:
        from broker._rabbitmq import open_rabbitmq_transport
    except ImportError as exc:
        raise UnsupportedURL(
            f"{what} the RabbitMQ transport, which could not be imported ({exc}); install "
            f"rabbitry with its aiormq dependency"
        ) from exc
    return open_rabbitmq_transport
