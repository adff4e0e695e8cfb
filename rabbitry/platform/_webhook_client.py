"""The HTTP client that calls customers' URLs: it connects only to addresses it checked.

    async with open_webhook_client(allow_private=False) as client:   # an httpx.AsyncClient
        await client.post("https://hooks.example.com/sms", content=body)
        # AddressRefused when the name resolves to 127.0.0.1 now, whatever it resolved to when
        # the customer gave the URL (DNS rebinding)

A customer's URL was checked when it was given (rabbitry.platform._customer_urls), but a name may
resolve elsewhere by the time a callback is sent. So the check is made again at the one place
that matters: the connection. The client's connection pool (httpcore's) opens every connection
through `CheckedBackend`, an httpcore network backend that resolves the host itself (off the
trio loop, in bounded time), refuses it if any address is refused, and connects to one of the
addresses it checked, never to a name, so nothing resolves it a second time. TLS is unchanged:
httpcore wraps that connection with the URL's host as the server name, so the certificate is
verified for the name, and the Host header is the URL's.

Redirects are not followed (a 3xx is the receiver's answer, and a failed attempt), proxies from
the environment are not used (a proxy would make the address checked the proxy's), and a pooled
connection is kept for its host only, to the address it was opened to.

The transport is `CheckedTransport`, an `httpx.AsyncBaseTransport` over `httpcore`'s public
connection pool (httpx's own transport does not take a network backend); httpcore's errors are
raised as httpx's, so callers see the usual `httpx.HTTPError`s, and `AddressRefused` or
`UnresolvedHost` (both `ConnectionError`s) for a host refused or not resolved.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager

import httpcore
import httpx
import trio

from rabbitry.platform._addresses import UnresolvedHost, allowed_addresses

TIMEOUT = httpx.Timeout(10.0, connect=5.0)
"""A callback's time budget: 5 s to resolve and connect, 10 s for each read and write."""

MAX_ADDRESSES = 3
"""The most addresses of one host tried, in the resolver's order, before giving up."""

# httpcore's errors and the httpx errors they are raised as (a subclass before its base).
_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
    (httpcore.ProxyError, httpx.ProxyError),
)


class CheckedBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that connects only to addresses a host may reach (see the
    module docstring); `inner` makes the connections (trio's sockets by default)."""

    def __init__(
        self,
        *,
        allow_private: bool,
        resolve_timeout: float = 5.0,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.allow_private = allow_private
        self.resolve_timeout = resolve_timeout
        self.inner = inner or httpcore.TrioBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        budget = self.resolve_timeout if timeout is None else min(timeout, self.resolve_timeout)
        addresses: list[str] = []
        with trio.move_on_after(budget):
            addresses = await allowed_addresses(host, port, allow_private=self.allow_private)
        if not addresses:
            raise UnresolvedHost(f"{host!r} did not resolve within {budget:g} s")
        failure: Exception | None = None
        for address in addresses[:MAX_ADDRESSES]:
            try:
                return await self.inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                failure = error
        assert failure is not None  # `allowed_addresses` returns at least one address
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks are sent over TCP only, not to a Unix socket")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class CheckedTransport(httpx.AsyncBaseTransport):
    """An httpx transport over an httpcore connection pool whose connections `backend` opens."""

    def __init__(self, backend: httpcore.AsyncNetworkBackend, *, max_connections: int = 100):
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=max_connections,
            max_keepalive_connections=max_connections // 5,
            keepalive_expiry=5.0,
            network_backend=backend,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(request.stream, httpx.AsyncByteStream):
            raise TypeError("the webhook client sends async request bodies only")
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _as_httpx_errors(request):
            response = await self._pool.handle_async_request(core_request)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseBody(response.stream, request),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        with _as_httpx_errors(None):
            await self._pool.aclose()


class _ResponseBody(httpx.AsyncByteStream):
    def __init__(self, stream: Iterable[bytes] | AsyncIterable[bytes], request: httpx.Request):
        self._stream = stream
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if not hasattr(self._stream, "__aiter__"):
            raise TypeError("the webhook client reads async response bodies only")
        with _as_httpx_errors(self._request):
            async for chunk in self._stream:
                yield chunk

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            with _as_httpx_errors(self._request):
                await close()


@contextmanager
def _as_httpx_errors(request: httpx.Request | None) -> Iterator[None]:
    """httpcore's errors raised as the httpx errors of the same name (httpx's own mapping)."""
    try:
        yield
    except Exception as error:
        for core, mapped in _ERRORS:
            if isinstance(error, core):
                raise mapped(str(error), request=request) from error
        raise


@asynccontextmanager
async def open_webhook_client(
    *, allow_private: bool, timeouts: httpx.Timeout = TIMEOUT
) -> AsyncIterator[httpx.AsyncClient]:
    """An `httpx.AsyncClient` for customers' URLs (see the module docstring), closed on exit."""
    backend = CheckedBackend(allow_private=allow_private, resolve_timeout=timeouts.connect or 5.0)
    async with httpx.AsyncClient(
        transport=CheckedTransport(backend),
        timeout=timeouts,
        follow_redirects=False,
        trust_env=False,
    ) as client:
        yield client
