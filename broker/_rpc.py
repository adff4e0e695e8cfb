"""RPC over the transport: a client that decodes replies and raises remote failures as errors.

::

    client = RpcClient(transport, codec)
    balance = await client.call(GetBalance(account="42"), exchange="", routing_key="accounts",
                                timeout=2.0)

A call goes through :meth:`~broker.Transport.call` (RabbitMQ: direct reply-to, a correlation id
per call, the deadline as the request's expiration), so many calls share one connection and run
concurrently. The server (``actors.run_service``) answers with the handler's return value, or
with a :class:`RemoteFailure` when the handler raised; the client decodes the first and raises
:class:`RemoteError` for the second. A reply that comes after its call gave up is dropped by the
transport and counted in its ``statistics().late_replies``.

A caller that knows the errors a service refuses with names their classes, and gets them back as
themselves instead of a RemoteError to pick apart::

    client = RpcClient(transport, codec, errors=(InsufficientFunds, UnknownAccount))
    try:
        await client.call(Hold(...), routing_key="accounts", timeout=2.0)
    except InsufficientFunds as exc:       # str(exc) is the remote message
        ...

A failure matches a named class by its qualified name (``module.QualName``, what
:attr:`RemoteFailure.type` carries), so both sides must name the class alike: a subclass, or a
class another version moved, comes back as RemoteError. The error is rebuilt without calling its
``__init__`` (its arguments did not travel, only its message): ``str(exc)`` and ``exc.args`` are
the remote message, attributes its ``__init__`` sets are absent; its ``__cause__`` is the
RemoteError, which names the service.

Both sides register :class:`RemoteFailure` (and the ``None`` reply) with their codec themselves.
Raises CallTimeout when no reply came in time, a named error class or RemoteError for a remote
failure, UndecodableMessage for a reply the codec cannot read, and the PublishError subclasses.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable

import attrs
import msgspec

from broker._codec import Codec
from broker._envelope import Envelope
from broker._errors import BrokerError
from broker._transport import Transport

__all__ = [
    "NONE_TYPE",
    "REMOTE_FAILURE_TYPE",
    "RemoteError",
    "RemoteFailure",
    "RpcClient",
    "RpcStatistics",
    "encode_failure",
    "encode_reply",
    "register_rpc_types",
]

REMOTE_FAILURE_TYPE = "rabbitry.RemoteFailure"
"""The envelope type of an error reply."""

NONE_TYPE = "rabbitry.None"
"""The envelope type of a reply whose handler returned None (an empty body)."""


class RemoteFailure(msgspec.Struct, frozen=True, kw_only=True):
    """An error reply: the handler of a request raised ``type`` with ``message``.

    ``type`` is the exception's qualified class name (``"builtins.ValueError"``); ``service`` is
    the queue that served the request.
    """

    type: str
    message: str
    service: str = ""


class RemoteError(BrokerError, RuntimeError):
    """The remote handler of a call raised; ``remote_type`` names its exception class.

    ``failure`` is the :class:`RemoteFailure` as it came back.
    """

    def __init__(self, message: str, failure: RemoteFailure) -> None:
        super().__init__(message)
        self.failure = failure
        self.remote_type = failure.type
        self.remote_message = failure.message


def register_rpc_types(codec: Codec) -> None:
    """Register :class:`RemoteFailure` with ``codec`` (a no-op when it is already there)."""
    codec.register(RemoteFailure, name=REMOTE_FAILURE_TYPE)


def qualified_name(cls: type) -> str:
    """``module.QualName`` of an exception class, as :attr:`RemoteFailure.type` carries it."""
    return f"{cls.__module__}.{cls.__qualname__}"


def rebuild_error(cls: type[Exception], message: str) -> Exception:
    """An instance of ``cls`` whose message is ``message``, made without calling its
    ``__init__`` (whose arguments may be others than a message)."""
    error = cls.__new__(cls, message)
    error.args = (message,)
    return error


def encode_failure(codec: Codec, error: BaseException, *, service: str = "") -> Envelope:
    """The error reply for ``error`` (its type and message, never its traceback)."""
    register_rpc_types(codec)
    failure = RemoteFailure(type=qualified_name(type(error)), message=str(error), service=service)
    return codec.encode(failure)


def encode_reply(codec: Codec, result: object) -> Envelope:
    """The reply for a handler's return value; None travels as an empty :data:`NONE_TYPE`."""
    if result is None:
        return Envelope(
            message_id=uuid.uuid4().hex,
            type=NONE_TYPE,
            body=b"",
            timestamp=time.time(),
            content_type=codec.content_type,
        )
    return codec.encode(result)


@attrs.frozen(kw_only=True)
class RpcStatistics:
    """A snapshot of an :class:`RpcClient`'s counters."""

    calls: int
    replies: int
    remote_errors: int
    timeouts: int


class RpcClient:
    """Calls services through ``transport``, encoding with ``codec``; share one across tasks.

    ``errors`` are the exception classes a remote failure is raised as when it names one of them
    (see the module docstring); any other failure is a :class:`RemoteError`.
    """

    def __init__(
        self, transport: Transport, codec: Codec, *, errors: Iterable[type[Exception]] = ()
    ) -> None:
        self.transport = transport
        self.codec = codec
        self.errors: dict[str, type[Exception]] = {qualified_name(cls): cls for cls in errors}
        register_rpc_types(codec)
        self._calls = self._replies = self._remote_errors = self._timeouts = 0

    async def call(
        self,
        message: object,
        *,
        exchange: str = "",
        routing_key: str,
        timeout: float,  # noqa: ASYNC109  (the deadline also travels, as the request's expiration)
    ) -> object:
        """Send ``message`` as a request and return the decoded reply.

        Raises the handler's error when its class is one of ``errors``, RemoteError when the
        handler raised anything else, CallTimeout when no reply came within
        ``timeout`` seconds (the request expires in the queue then too), UndecodableMessage for a
        reply of an unregistered type, and the errors of :meth:`~broker.Transport.call`.
        """
        self._calls += 1
        try:
            reply = await self.transport.call(
                self.codec.encode(message),
                exchange=exchange,
                routing_key=routing_key,
                timeout=timeout,
            )
        except TimeoutError:
            self._timeouts += 1
            raise
        self._replies += 1
        if reply.type == NONE_TYPE:
            return None
        decoded = self.codec.decode(reply)
        if isinstance(decoded, RemoteFailure) and reply.type == REMOTE_FAILURE_TYPE:
            self._remote_errors += 1
            where = f" in service {decoded.service!r}" if decoded.service else ""
            remote = RemoteError(
                f"the handler of {type(message).__name__}{where} raised {decoded.type}: "
                f"{decoded.message}; handle RemoteError (remote_type {decoded.type!r}) or fix the "
                f"request",
                decoded,
            )
            named = self.errors.get(decoded.type)
            if named is not None:
                raise rebuild_error(named, decoded.message) from remote
            raise remote
        return decoded

    def statistics(self) -> RpcStatistics:
        """Calls made, replies received, remote errors and timeouts; late replies are counted by
        the transport (``transport.statistics().late_replies``)."""
        return RpcStatistics(
            calls=self._calls,
            replies=self._replies,
            remote_errors=self._remote_errors,
            timeouts=self._timeouts,
        )
