"""One bound SMPP session on a trio TCP stream: sequence numbers, responses, keepalive, unbind.

    async with open_session("smsc.example", 2775, settings, label="acme") as session:
        await session.bind(BIND_TRANSCEIVER, Bind("acme", password))   # or raises BindRefused
        waiter = session.request(SUBMIT_SM, body)    # queued at once, in call order
        frame = await session.response(waiter)       # its resp (or generic_nack), or raises
        await session.serve(on_request)              # until the session breaks: raises

`request` queues a PDU for the one writer task (which sends what has piled up in one write, the
write shielded from cancellation so a PDU is never cut) and returns a waiter; `response` waits
for the answer until `response_timeout` after the request, then raises `ResponseTimeout`. The
session counts timeouts in a row (`timeouts`, reset by any answer) and breaks after
`max_timeouts` of them.

`serve(on_request)` runs the reader, the writer and the keepalive. The reader hands each
deliver_sm and data_sm to `on_request(session, frame)` in a task of its own (at most
`MAX_DELIVERIES` at once: the reader stops reading past that), so a slow sink does not hold up
the others; `on_request` answers with `respond`. The reader itself answers enquire_link, answers
the carrier's unbind (then the session ends), and answers any other request with generic_nack
ESME_RINVCMDID. An enquire_link goes out after `enquire_link_interval` without traffic from the
carrier; no answer to it breaks the session. `serve` returns only by cancellation; it raises
`CarrierDown` when the session broke (peer closed, corrupt stream, unbound, keepalive or
timeouts), or what an `on_request` raised.

Leaving `open_session` unbinds when the session is still sound (the usual case: `run` was
cancelled): unbind, then up to `unbind_timeout` for unbind_resp, shielded, then close. A broken
session is just closed. Waiters still pending get `CarrierDown`.
"""

import logging
import math
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import attrs
import trio

from rabbitry.carriers import (
    AuthenticationFailed,
    CarrierDown,
    CarrierError,
    RetryableError,
)
from rabbitry.carriers.smpp._pdu import (
    DATA_SM,
    DELIVER_SM,
    ENQUIRE_LINK,
    ESME_RBINDFAIL,
    ESME_RINVCMDID,
    ESME_RINVPASWD,
    ESME_RINVSYSID,
    ESME_ROK,
    GENERIC_NACK,
    RESPONSE,
    UNBIND,
    Bind,
    Frame,
    FrameReader,
    FramingError,
    encode_frame,
    status_name,
)

_log = logging.getLogger("rabbitry.carriers.smpp")

MAX_DELIVERIES = 1024
"""deliver_sm handled at once per session; the reader waits for a free slot past that."""

ALERT_NOTIFICATION = 0x00000102  # a request without a response
_READ_SIZE = 65536
_MAX_SEQUENCE = 0x7FFFFFFF
_BIND_REFUSALS = frozenset({ESME_RBINDFAIL, ESME_RINVPASWD, ESME_RINVSYSID})


class BindRefused(AuthenticationFailed):
    """The carrier refused our bind (ESME_RBINDFAIL, ESME_RINVPASWD, ESME_RINVSYSID).

    Credentials or bind limits are wrong: reconnecting at once will not help, and carriers block
    addresses that keep trying, so back off slowly. `code` is the status name.
    """


class ResponseTimeout(RetryableError):  # noqa: N818 - named like the plugin API's errors
    """No answer to a request within the response timeout."""

    code = "timeout"


@attrs.frozen
class SessionSettings:
    """The timers of a session, in seconds (see the module docstring)."""

    response_timeout: float = 10.0
    enquire_link_interval: float = 30.0
    max_timeouts: int = 3
    connect_timeout: float = 10.0
    unbind_timeout: float = 2.0
    tls: ssl.SSLContext | None = None
    """Over TLS with this context (the handshake within `connect_timeout`); None: plain TCP."""
    server_name: str | None = None
    """The name the SMSC's certificate is checked for; None: the host connected to."""


class Waiter:
    """A request awaiting its response: `Session.request` makes it, `Session.response` awaits it."""

    __slots__ = ("command_id", "deadline", "done", "error", "frame", "sequence")

    def __init__(self, command_id: int, sequence: int, deadline: float) -> None:
        self.command_id = command_id
        self.sequence = sequence
        self.deadline = deadline
        self.done = trio.Event()
        self.frame: Frame | None = None
        self.error: CarrierError | None = None


RequestHandler = Callable[["Session", Frame], Awaitable[None]]


@asynccontextmanager
async def open_session(
    host: str, port: int, settings: SessionSettings, *, label: str
) -> AsyncIterator["Session"]:
    """A TCP connection to `host:port` as a session (not bound yet); see the module docstring."""
    stream: trio.abc.Stream
    try:
        with trio.fail_after(settings.connect_timeout):
            tcp = await trio.open_tcp_stream(host, port)
            stream = tcp
            if settings.tls is not None:
                stream = trio.SSLStream(
                    tcp, settings.tls, server_hostname=settings.server_name or host
                )
                try:
                    await stream.do_handshake()
                except BaseException:
                    await trio.aclose_forcefully(tcp)
                    raise
    except trio.BrokenResourceError as exc:
        reason = exc.__cause__ or exc
        raise CarrierDown(
            f"carrier {label!r} cannot connect to {host}:{port} over TLS: {reason}",
            code="tls",
        ) from exc
    except (OSError, trio.TooSlowError) as exc:
        raise CarrierDown(
            f"carrier {label!r} cannot connect to {host}:{port}: {exc or type(exc).__name__}",
            code="connect",
        ) from exc
    session = Session(stream, settings, label=label)
    try:
        yield session
    finally:
        await session.close()


class Session:
    """A connection to an SMSC speaking SMPP 3.4; see the module docstring."""

    def __init__(self, stream: trio.abc.Stream, settings: SessionSettings, *, label: str) -> None:
        self.stream = stream
        self.settings = settings
        self.label = label
        self.bound = False  # bound and not over yet
        self.timeouts = 0  # response timeouts in a row
        self._sequence = 0
        self._bind_accepted = False
        self._waiters: dict[int, Waiter] = {}
        self._reader = FrameReader()
        self._backlog: list[Frame] = []
        self._send, self._outbox = trio.open_memory_channel[bytes | trio.Event](math.inf)
        self._last_received = trio.current_time()
        self._error: BaseException | None = None
        self._closed = False
        self._scope: trio.CancelScope | None = None

    async def bind(self, command_id: int, bind: Bind) -> str:
        """Sends the bind and reads its answer; returns the SMSC's system_id.

        Raises `BindRefused` for a refusal of the credentials or limits, `CarrierDown` for any
        other refusal, a closed connection or no answer within the response timeout.
        """
        sequence = self._next_sequence()
        await self.stream.send_all(encode_frame(command_id, 0, sequence, bind.encode()))
        with trio.move_on_after(self.settings.response_timeout):
            while True:
                frames = await self._receive()
                for index, frame in enumerate(frames):
                    if frame.sequence == sequence and frame.command_id & RESPONSE:
                        self._backlog = frames[index + 1 :]  # what came right after: served first
                        return self._bound(frame, bind)
        raise CarrierDown(
            f"carrier {self.label!r} did not answer the bind of {bind.system_id!r} within"
            f" {self.settings.response_timeout} s",
            code="bind_timeout",
        )

    def _bound(self, frame: Frame, bind: Bind) -> str:
        if frame.status in _BIND_REFUSALS:
            name = status_name(frame.status)
            raise BindRefused(
                f"carrier {self.label!r} refused the bind of system_id {bind.system_id!r}"
                f" ({name}); check the system_id, password and bind limits",
                code=name,
            )
        if frame.status != ESME_ROK or frame.command_id == GENERIC_NACK:
            name = status_name(frame.status)
            raise CarrierDown(
                f"carrier {self.label!r} answered the bind of {bind.system_id!r} with {name}",
                code=name,
            )
        self.bound = self._bind_accepted = True
        end = frame.body.find(b"\x00")
        return frame.body[: end if end >= 0 else len(frame.body)].decode("latin-1")

    def request(self, command_id: int, body: bytes = b"") -> Waiter:
        """Queues a request; returns its waiter. Raises `CarrierDown` when the session is over."""
        if self._closed or not self.bound:
            raise CarrierDown(f"carrier {self.label!r} is not bound", code="down")
        sequence = self._next_sequence()
        waiter = Waiter(command_id, sequence, trio.current_time() + self.settings.response_timeout)
        self._waiters[sequence] = waiter
        self._send.send_nowait(encode_frame(command_id, 0, sequence, body))
        return waiter

    async def response(self, waiter: Waiter) -> Frame:
        """The answer to `waiter`'s request (a *_resp or a generic_nack, any status).

        Raises `ResponseTimeout` when none came in time, `CarrierDown` when the session ended.
        """
        with trio.move_on_at(waiter.deadline):
            await waiter.done.wait()
        if waiter.error is not None:
            raise waiter.error
        if waiter.frame is None:
            self._waiters.pop(waiter.sequence, None)
            self.timeouts += 1
            error = ResponseTimeout(
                f"carrier {self.label!r} did not answer request 0x{waiter.command_id:08X}"
                f" (sequence {waiter.sequence}) within {self.settings.response_timeout} s"
                f" ({self.timeouts} in a row)"
            )
            if self.timeouts >= self.settings.max_timeouts:
                self._fail(CarrierDown(f"{error}; the session is dropped", code="timeouts"))
            raise error
        self.timeouts = 0
        return waiter.frame

    def forget(self, waiter: Waiter) -> None:
        """Drops `waiter`: an answer still on its way is ignored."""
        self._waiters.pop(waiter.sequence, None)

    def respond(self, request: Frame, body: bytes = b"", status: int = ESME_ROK) -> None:
        """Queues the response to `request` (a no-op once the session is over)."""
        if not self._closed:
            command_id = request.command_id | RESPONSE
            self._send.send_nowait(encode_frame(command_id, status, request.sequence, body))

    def nack(self, request: Frame, status: int) -> None:
        """Queues a generic_nack for `request` with `status`."""
        if not self._closed:
            self._send.send_nowait(encode_frame(GENERIC_NACK, status, request.sequence))

    async def serve(self, on_request: RequestHandler) -> None:
        """Reads, writes and keeps the session alive until cancelled; raises when it breaks."""
        try:
            async with trio.open_nursery() as nursery:
                self._scope = nursery.cancel_scope
                nursery.start_soon(self._guarded, self._write_loop)
                nursery.start_soon(self._guarded, self._keepalive_loop)
                nursery.start_soon(self._guarded, self._read_loop, nursery, on_request)
        finally:
            self._end()
        if self._error is not None:
            raise self._error

    def _next_sequence(self) -> int:
        self._sequence = self._sequence % _MAX_SEQUENCE + 1
        return self._sequence

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
            _log.warning("smpp %s: %s", self.label, error)
        if self._scope is not None:
            self._scope.cancel()

    async def _guarded(self, task: Callable[..., Awaitable[None]], *args: object) -> None:
        try:
            await task(*args)
        except Exception as exc:  # noqa: BLE001 - ends the session; serve raises it as it is
            self._fail(exc)

    def _end(self) -> None:
        self._closed = True
        self.bound = False
        for waiter in self._waiters.values():
            waiter.error = CarrierDown(
                f"carrier {self.label!r} session ended before the answer to sequence"
                f" {waiter.sequence}",
                code="down",
            )
            waiter.done.set()
        self._waiters.clear()

    async def _receive(self) -> list[Frame]:
        data = await self.stream.receive_some(_READ_SIZE)
        if not data:
            raise CarrierDown(f"carrier {self.label!r} closed the connection", code="closed")
        self._last_received = trio.current_time()
        try:
            return list(self._reader.feed(bytes(data)))
        except FramingError as exc:
            raise CarrierDown(f"carrier {self.label!r}: {exc}", code="corrupt") from exc

    async def _read_loop(self, nursery: trio.Nursery, on_request: RequestHandler) -> None:
        slots = trio.Semaphore(MAX_DELIVERIES)

        async def handle(frame: Frame) -> None:
            try:
                await on_request(self, frame)
            finally:
                slots.release()

        frames, self._backlog = self._backlog, []
        while True:
            for frame in frames:
                command_id = frame.command_id
                if command_id & RESPONSE:
                    self._answered(frame)
                elif command_id in (DELIVER_SM, DATA_SM):
                    await slots.acquire()
                    nursery.start_soon(self._guarded, handle, frame)
                elif command_id == ENQUIRE_LINK:
                    self.respond(frame)
                elif command_id == UNBIND:
                    self.respond(frame)
                    await self._flush()
                    raise CarrierDown(f"carrier {self.label!r} unbound the session", code="unbound")
                elif command_id != ALERT_NOTIFICATION:
                    _log.warning(
                        "smpp %s: unknown command 0x%08X (sequence %d), answered generic_nack",
                        self.label,
                        command_id,
                        frame.sequence,
                    )
                    self.nack(frame, ESME_RINVCMDID)
            frames = await self._receive()

    def _answered(self, frame: Frame) -> None:
        waiter = self._waiters.pop(frame.sequence, None)
        if waiter is None:
            _log.info(
                "smpp %s: answer 0x%08X %s to no pending request (sequence %d; late?)",
                self.label,
                frame.command_id,
                status_name(frame.status),
                frame.sequence,
            )
            return
        waiter.frame = frame
        waiter.done.set()

    async def _flush(self) -> None:
        written = trio.Event()
        self._send.send_nowait(written)
        with trio.move_on_after(self.settings.response_timeout):
            await written.wait()

    async def _write_loop(self) -> None:
        async for item in self._outbox:
            batch: list[bytes] = []
            flushed: list[trio.Event] = []
            while True:
                if isinstance(item, bytes):
                    batch.append(item)
                else:
                    flushed.append(item)
                try:
                    item = self._outbox.receive_nowait()
                except trio.WouldBlock:
                    break
            if batch:
                await self._write(b"".join(batch))
            for event in flushed:
                event.set()

    async def _write(self, data: bytes) -> None:
        with trio.CancelScope(shield=True):  # a PDU cut by a cancellation corrupts the stream
            try:
                with trio.fail_after(self.settings.response_timeout):
                    await self.stream.send_all(data)
            except trio.TooSlowError as exc:
                raise CarrierDown(
                    f"carrier {self.label!r} did not take our data for"
                    f" {self.settings.response_timeout} s",
                    code="stalled",
                ) from exc
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise CarrierDown(
                    f"carrier {self.label!r} connection broke while sending: {exc}",
                    code="closed",
                ) from exc

    async def _keepalive_loop(self) -> None:
        interval = self.settings.enquire_link_interval
        while True:
            await trio.sleep_until(self._last_received + interval)
            if trio.current_time() < self._last_received + interval:
                continue  # the carrier spoke meanwhile
            waiter = self.request(ENQUIRE_LINK)
            try:
                await self.response(waiter)
            except ResponseTimeout as exc:
                raise CarrierDown(
                    f"carrier {self.label!r} did not answer enquire_link within"
                    f" {self.settings.response_timeout} s",
                    code="keepalive",
                ) from exc

    async def close(self) -> None:
        """Unbinds when the session is still sound (see the module docstring), then closes."""
        sound = self._bind_accepted and self._error is None
        self._end()
        with trio.CancelScope(shield=True):
            if sound:
                with trio.move_on_after(self.settings.unbind_timeout):
                    await self._unbind()
            await trio.aclose_forcefully(self.stream)

    async def _unbind(self) -> None:
        sequence = self._next_sequence()
        try:
            await self.stream.send_all(encode_frame(UNBIND, 0, sequence))
            while True:
                for frame in await self._receive():
                    if frame.command_id == UNBIND | RESPONSE and frame.sequence == sequence:
                        return
        except (CarrierDown, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            _log.info("smpp %s: no unbind_resp (%s)", self.label, exc)
