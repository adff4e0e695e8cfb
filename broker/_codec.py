"""The codec: message objects to envelopes and back, one decoder per registered type, built once.

Message types are msgspec Structs (tagged or not) and attrs classes, registered under a type name
(the Struct's string tag, or else the class name) that travels in :attr:`Envelope.type`::

    class SubmitSms(msgspec.Struct, frozen=True, tag=True):
        to: str
        text: str

    codec = Codec([SubmitSms])                     # JSON; Codec(..., content_type=MSGPACK)
    envelope = codec.encode(SubmitSms(to="+4912345", text="hi"))
    assert codec.decode(envelope) == SubmitSms(to="+4912345", text="hi")

The decoder is chosen by the envelope's ``content_type``, so a JSON service reads a msgpack
producer's messages. Raises UndecodableMessage for a body that is not valid for its format or does
not match its declared type (the consumer layer parks such a message), UnknownMessageType for
encoding an unregistered object, UnencodableMessage for a value the format cannot carry, and
InvalidMessageType for registering what cannot be one.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal, TypeVar, cast

import attrs
import msgspec

from broker._envelope import Envelope, HeaderValue
from broker._errors import (
    InvalidMessageType,
    UndecodableMessage,
    UnencodableMessage,
    UnknownMessageType,
)

__all__ = ["JSON", "MSGPACK", "Codec", "ContentType", "type_name"]

ContentType = Literal["application/json", "application/msgpack"]
JSON: Final = "application/json"
MSGPACK: Final = "application/msgpack"
T = TypeVar("T")


def type_name(cls: type) -> str:
    """The name a message type travels under: a Struct's string tag, else the class name.

    >>> class Ping(msgspec.Struct, tag="ping"): ...
    >>> type_name(Ping)
    'ping'
    """
    if isinstance(cls, type) and issubclass(cls, msgspec.Struct):
        tag = cls.__struct_config__.tag
        if isinstance(tag, str):
            return tag
    return cls.__name__


@attrs.frozen
class _Entry:
    cls: type
    json: msgspec.json.Decoder[Any]
    msgpack: msgspec.msgpack.Decoder[Any]


class Codec:
    """Registered message types, one JSON and one msgpack decoder each, and the shared encoders.

    ``content_type`` picks what :meth:`encode` produces; :meth:`decode` reads both.
    Raises InvalidMessageType for an unknown content type.
    """

    def __init__(self, types: Iterable[type] = (), *, content_type: str = JSON) -> None:
        if content_type not in (JSON, MSGPACK):
            raise InvalidMessageType(
                f"codec content_type must be {JSON!r} or {MSGPACK!r} (got {content_type!r}); "
                f"pick one of those"
            )
        self.content_type: ContentType = cast("ContentType", content_type)
        self._json = msgspec.json.Encoder()
        self._msgpack = msgspec.msgpack.Encoder()
        self._by_name: dict[str, _Entry] = {}
        self._by_class: dict[type, str] = {}
        for cls in types:
            self.register(cls)

    def register(self, cls: type, *, name: str | None = None) -> str:
        """Register ``cls`` under ``name`` (default :func:`type_name`) and return the name.

        Registering the same class under the same name again is a no-op. Raises
        InvalidMessageType for a class that is neither a msgspec Struct nor an attrs class, or a
        name already taken by another class.
        """
        is_struct = isinstance(cls, type) and issubclass(cls, msgspec.Struct)
        if not (is_struct or attrs.has(cls)):
            raise InvalidMessageType(
                f"message type {cls!r} is neither a msgspec Struct nor an attrs class; "
                f"define it as one to register it"
            )
        name = type_name(cls) if name is None else name
        existing = self._by_name.get(name)
        if existing is not None and existing.cls is not cls:
            raise InvalidMessageType(
                f"message type name {name!r} is taken by {existing.cls!r}, so {cls!r} cannot use "
                f"it; give one of them another tag or pass name="
            )
        if existing is None:
            self._by_name[name] = _Entry(
                cls=cls, json=msgspec.json.Decoder(cls), msgpack=msgspec.msgpack.Decoder(cls)
            )
            self._by_class[cls] = name
        return name

    @property
    def names(self) -> tuple[str, ...]:
        """Every registered type name, sorted."""
        return tuple(sorted(self._by_name))

    def encode(
        self,
        message: object,
        *,
        correlation_id: str | None = None,
        reply_to: str | None = None,
        headers: Mapping[str, HeaderValue] | None = None,
    ) -> Envelope:
        """Encode ``message`` into a fresh envelope (new uuid4 message id, current time).

        Raises UnknownMessageType if its class is not registered, UnencodableMessage if a value
        does not fit the format (an int beyond 64 bits, a non-str dict key in JSON...).
        """
        name = self._by_class.get(type(message))
        if name is None:
            raise UnknownMessageType(
                f"message type {type(message)!r} is not registered with this codec; call "
                f"codec.register({type(message).__name__}) first"
            )
        encoder = self._json if self.content_type == JSON else self._msgpack
        try:
            body = encoder.encode(message)
        except (msgspec.EncodeError, OverflowError, TypeError, ValueError) as exc:
            raise UnencodableMessage(
                f"message {message!r} of type {name!r} cannot be encoded as {self.content_type}: "
                f"{exc}; keep its fields within what the format carries"
            ) from exc
        return Envelope(
            message_id=uuid.uuid4().hex,
            type=name,
            body=body,
            timestamp=time.time(),
            content_type=self.content_type,
            correlation_id=correlation_id,
            reply_to=reply_to,
            headers=dict(headers or {}),
        )

    def decode(self, envelope: Envelope) -> object:
        """Decode the payload of ``envelope`` into an instance of its registered type.

        Raises UndecodableMessage naming the message, the type and msgspec's reason (with the
        path of the offending field) for an unknown type name or content type, a malformed body,
        or one that does not match the type.
        """
        entry = self._by_name.get(envelope.type)
        where = f"message {envelope.message_id!r} of type {envelope.type!r}"
        if entry is None:
            raise UndecodableMessage(
                f"{where} has no registered type (known: {list(self.names)!r}); register it "
                f"with the consumer's codec or park the message"
            )
        if envelope.content_type == JSON:
            decoder: msgspec.json.Decoder[Any] | msgspec.msgpack.Decoder[Any] = entry.json
        elif envelope.content_type == MSGPACK:
            decoder = entry.msgpack
        else:
            raise UndecodableMessage(
                f"{where} has unsupported content type {envelope.content_type!r}; "
                f"producers must send {JSON!r} or {MSGPACK!r}"
            )
        try:
            return decoder.decode(envelope.body)
        except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
            raise UndecodableMessage(
                f"{where} does not decode as {entry.cls.__name__} from {envelope.content_type}: "
                f"{exc}; fix the producer and replay it from the parking lot"
            ) from exc

    def decode_as(self, envelope: Envelope, cls: type[T]) -> T:
        """:meth:`decode`, then check the result is a ``cls``; raises UndecodableMessage if not."""
        message = self.decode(envelope)
        if not isinstance(message, cls):
            raise UndecodableMessage(
                f"message {envelope.message_id!r} is a {type(message).__name__}, not the expected "
                f"{cls.__name__}; route {envelope.type!r} messages to their own handler"
            )
        return message
