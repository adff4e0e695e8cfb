"""Opening a transport by URL: ``memory://`` for the in-memory broker, ``amqp://`` for RabbitMQ.

::

    async with open_transport("amqp://guest:guest@127.0.0.1:5672/") as transport:
        ...
    async with open_transport("memory://demo") as a, open_transport("memory://demo") as b:
        ...  # a and b share the in-memory broker called "demo"

``memory://`` alone opens a private broker nobody else sees; ``memory://NAME`` shares the broker
``NAME`` with every transport of this process opened on the same name. ``amqp://`` and
``amqps://`` URLs go to the RabbitMQ transport (imported only then), with ``options`` passed on.
Raises UnsupportedURL for any other scheme, naming the URL with its user and password masked.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from broker._errors import UnsupportedURL
from broker._memory import memory_broker
from broker._memory_transport import open_memory_transport
from broker._transport import Transport
from conf import mask_url, split_url

__all__ = ["open_transport"]

AMQP_SCHEMES = ("amqp", "amqps")


@asynccontextmanager
async def open_transport(url: str, **options: Any) -> AsyncIterator[Transport]:
    """Open the transport ``url`` names for the ``async with`` block, and close it on exit.

    ``options`` go to the RabbitMQ transport (``close_timeout``, ``connection_name``...); the
    memory transport takes none. Raises UnsupportedURL for an unknown scheme, options given to a
    ``memory://`` URL, or an ``amqp://`` URL when the RabbitMQ transport is not installed.
    """
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
        try:
            # Imported here so that aiormq and its bridge thread load only for amqp:// URLs.
            from broker._rabbitmq import open_rabbitmq_transport
        except ImportError as exc:
            raise UnsupportedURL(
                f"broker URL {mask_url(url)!r} needs the RabbitMQ transport, which could not be "
                f"imported ({exc}); install rabbitry with its aiormq dependency"
            ) from exc
        async with open_rabbitmq_transport(url, **options) as transport:
            yield transport
    else:
        raise UnsupportedURL(
            f"broker URL {mask_url(url)!r} has no supported scheme (got {scheme!r}); use "
            f"memory://[name] or amqp://user:password@host:5672/vhost"
        )
