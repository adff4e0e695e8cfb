"""Serving the gateway: hypercorn under trio, on a socket bound here so port 0 works.

    async with trio.open_nursery() as nursery:
        address = await nursery.start(
            partial(serve_gateway, GatewayApp(platform), "127.0.0.1:0", shutdown=stop)
        )
        address                     # "127.0.0.1:54321": the port the system chose
        ...
        stop.set()                  # stop accepting, finish the requests in flight, return

The listening socket is bound and listening before `task_status.started(address)`, so a client
may connect as soon as the caller has the address. The socket is handed to hypercorn as
`fd://N` (hypercorn then owns and closes it). When `shutdown` is set, hypercorn closes the
listener, lets the requests in flight finish (for at most `graceful_timeout` seconds) and
`serve_gateway` returns; cancelling it instead drops them. hypercorn's access log is off unless
`access_log=True`; its error log goes to the "hypercorn.error" logger, without adding handlers.

Raises `ValueError` for a `bind` that is not "host:port", `OSError` when it cannot be bound.
"""

import contextlib
import logging
import os
import socket
from functools import partial
from typing import cast

import hypercorn.config
import hypercorn.trio
import hypercorn.typing
import trio

from rabbitry.gateway._app import GatewayApp


async def serve_gateway(
    app: GatewayApp,
    bind: str,
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    shutdown: trio.Event | None = None,
    graceful_timeout: float = 10.0,
    access_log: bool = False,
) -> None:
    """Serves `app` on `bind` ("host:port", "[::1]:0") until `shutdown` is set or cancelled."""
    listener = _listen(bind)
    try:
        host, port = listener.getsockname()[:2]
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        config = hypercorn.config.Config()
        config.bind = [f"fd://{listener.fileno()}"]
        config.accesslog = logging.getLogger("hypercorn.access") if access_log else None
        config.errorlog = logging.getLogger("hypercorn.error")
        config.graceful_timeout = graceful_timeout
        config.include_server_header = False
    except BaseException:
        listener.close()
        raise
    descriptor = listener.detach()
    serving = False
    try:
        async with trio.open_nursery() as nursery:
            trigger = shutdown.wait if shutdown is not None else None
            # hypercorn types ASGI events as TypedDicts; the app takes the same dicts as mappings.
            asgi = cast("hypercorn.typing.ASGIFramework", app)
            await nursery.start(
                partial(hypercorn.trio.serve, asgi, config, shutdown_trigger=trigger)
            )
            serving = True
            task_status.started(address)
    finally:
        if not serving:
            # hypercorn wraps the descriptor in its own socket only right before it reports
            # started (no checkpoint between), so until then nobody else will close it.
            with contextlib.suppress(OSError):
                os.close(descriptor)


def _listen(bind: str) -> socket.socket:
    host, separator, port = bind.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not separator or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"gateway bind must be 'host:port', like '127.0.0.1:8080' (got {bind!r})")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        listener.bind((host, int(port)))
        listener.listen(socket.SOMAXCONN)
    except BaseException:
        listener.close()
        raise
    return listener
