"""Serving the gateway: hypercorn's HTTP/1.1 protocol under trio, on a socket bound here (so port
0 works), with a cap on connections and a deadline on requests that stall.

    async with trio.open_nursery() as nursery:
        address = await nursery.start(
            partial(serve_gateway, GatewayApp(platform), "127.0.0.1:0", shutdown=stop)
        )
        address                     # "127.0.0.1:54321": the port the system chose
        ...
        stop.set()                  # stop accepting, finish the requests in flight, return

The listening socket is bound and listening before `task_status.started(address)`, so a client
may connect as soon as the caller has the address. When `shutdown` is set, the listener closes,
idle keep-alive connections close, the requests in flight finish (for at most `graceful_timeout`
seconds) and `serve_gateway` returns; cancelling it instead drops them. hypercorn's access log is
off unless `access_log=True`; its error log goes to the "hypercorn.error" logger, without adding
handlers.

Facing the internet:

- At most `max_connections` connections at once (`[http] max_connections`, 1,000): past it the
  accept loop waits for one to close, and new clients wait in the kernel's backlog (they are
  served late, not refused; an idle connection gives its place up within `read_timeout`).
  hypercorn's own `serve` has no such cap, which is why its accept loop is this module's: each
  accepted connection runs hypercorn's `TCPServer` (its HTTP/1.1 protocol, keep-alive and
  graceful close), as `hypercorn.trio.serve` would run it.
- A request whose headers stall is closed: headers must be whole within `read_timeout` seconds
  (`[http] read_timeout`, 10, but at most hypercorn's 5 s keep-alive) of the connection opening
  or of the previous answer. A body that stalls is the app's to time out (`GatewayApp`'s
  `read_timeout`: 408, then the connection closes). hypercorn's own `read_timeout` is left unset:
  it would also cut a slow answer (a 10,000-recipient send) and the console's event stream,
  whose clients rightly send nothing while they wait.

Raises `ValueError` for a `bind` that is not "host:port" (or bad limits), `OSError` when it
cannot be bound.
"""

import contextlib
import errno
import logging
import socket
import ssl
from functools import partial

import hypercorn.config
import hypercorn.trio.tcp_server
import hypercorn.trio.worker_context
import hypercorn.typing
import hypercorn.utils
import trio

from rabbitry.gateway._app import READ_TIMEOUT, GatewayApp

MAX_CONNECTIONS = 1000
"""Connections served at once, by default."""

KEEP_ALIVE_TIMEOUT = 5.0
"""Seconds an idle connection stays open (hypercorn's default), at most `read_timeout`."""

_log = logging.getLogger("rabbitry.gateway")
# accept() failing for want of descriptors or memory: wait, then try again (as trio.serve_listeners)
_ACCEPT_CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
_ACCEPT_PAUSE = 0.1


async def serve_gateway(
    app: GatewayApp,
    bind: str,
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    shutdown: trio.Event | None = None,
    graceful_timeout: float = 10.0,
    access_log: bool = False,
    max_connections: int = MAX_CONNECTIONS,
    read_timeout: float = READ_TIMEOUT,
    ssl_context: ssl.SSLContext | None = None,
) -> None:
    """Serves `app` on `bind` ("host:port", "[::1]:0") until `shutdown` is set or cancelled;
    HTTPS with `ssl_context` (its handshake bounded by `read_timeout`)."""
    if max_connections < 1:
        raise ValueError(f"max_connections must be >= 1 (got {max_connections!r})")
    if not read_timeout > 0:
        raise ValueError(f"read_timeout must be > 0 seconds (got {read_timeout!r})")
    listener = trio.SocketListener(trio.socket.from_stdlib_socket(_listen(bind)))
    host, port = listener.socket.getsockname()[:2]
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    config = hypercorn.config.Config()
    config.accesslog = logging.getLogger("hypercorn.access") if access_log else None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = graceful_timeout
    config.include_server_header = False
    config.keep_alive_timeout = min(KEEP_ALIVE_TIMEOUT, read_timeout)
    config.ssl_handshake_timeout = read_timeout
    context = hypercorn.trio.worker_context.WorkerContext(None)
    # hypercorn types ASGI events as TypedDicts; the app takes the same dicts as mappings.
    asgi = hypercorn.utils.wrap_app(app, config.wsgi_max_body_size, "asgi")  # type: ignore[arg-type]
    server = partial(
        hypercorn.trio.tcp_server.TCPServer,
        asgi,
        config,
        context,
        hypercorn.typing.ConnectionState({}),
    )
    slots = trio.CapacityLimiter(max_connections)
    async with trio.open_nursery() as connections:
        try:
            async with trio.open_nursery() as accepting:
                accepting.start_soon(_accept, listener, slots, connections, server, ssl_context)
                task_status.started(address)
                if shutdown is None:
                    await trio.sleep_forever()
                await shutdown.wait()
                accepting.cancel_scope.cancel()
        finally:
            await listener.aclose()
            await context.terminated.set()  # idle keep-alive connections close now
            connections.cancel_scope.deadline = trio.current_time() + graceful_timeout


async def _accept(
    listener: trio.SocketListener,
    slots: trio.CapacityLimiter,
    connections: trio.Nursery,
    server: partial[hypercorn.trio.tcp_server.TCPServer],
    ssl_context: ssl.SSLContext | None,
) -> None:
    """Accepts a connection whenever one of the `slots` is free, and serves it (over TLS with
    `ssl_context`: hypercorn's server does the handshake, under its timeout)."""
    while True:
        slot = object()
        await slots.acquire_on_behalf_of(slot)
        try:
            stream = await listener.accept()
        except OSError as exc:
            slots.release_on_behalf_of(slot)
            if exc.errno not in _ACCEPT_CAPACITY_ERRNOS:
                raise
            _log.warning("accept failed (%s); pausing %.1f s", exc, _ACCEPT_PAUSE)
            await trio.sleep(_ACCEPT_PAUSE)
            continue
        except BaseException:
            slots.release_on_behalf_of(slot)
            raise
        served: trio.abc.Stream = stream
        if ssl_context is not None:
            served = trio.SSLStream(stream, ssl_context, server_side=True, https_compatible=True)
        connections.start_soon(_connection, served, server, slots, slot)


async def _connection(
    stream: trio.abc.Stream,
    server: partial[hypercorn.trio.tcp_server.TCPServer],
    slots: trio.CapacityLimiter,
    slot: object,
) -> None:
    try:
        await server(stream).run()
    finally:
        slots.release_on_behalf_of(slot)
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await trio.aclose_forcefully(stream)


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
