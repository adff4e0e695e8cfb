"""Inbound SMS: the deliver_sm an SMSC sends for a message to one of our numbers, reassembled.

    part = decode_inbound(message)          # sender, to, concatenation info, undecoded payload
    parts = Reassembler(timeout=60.0)
    event = parts.add(part, now)            # InboundEvent once every part is there, else None
    parts.next_deadline()                   # when the oldest incomplete message gives up
    parts.expired(now)                      # what came of messages whose time is up

A long SMS arrives in parts, each its own deliver_sm carrying its place either in a user data
header (esm_class 0x40; information element 0x00 with an 8-bit reference or 0x08 with a 16-bit
one) or in the SAR TLVs (0x020C/0x020E/0x020F). Parts are grouped by (sender, to, reference,
total) and joined in sequence order once all `total` are there; the joined payload is decoded
as one, so an escape or surrogate pair cut between parts survives. A message still incomplete
`timeout` seconds after its first part is given up on: `expired` returns it with the parts that
did come, in order (better a partial text than none, as Kannel does).

A part that carries a `receipted_message_id` TLV (some SMSCs put their own id of an inbound SMS
there) gives the SMS its carrier id, so an SMS the SMSC sends again is taken once; a long one's is
its parts' ids in order, joined by ",", when every part has one. Without it the carrier id is "".

Payloads decode by data_coding: 0 (and 0xF0..0xF3) GSM-7 unpacked, 8 UTF-16-BE, 1 and 3 ASCII /
Latin-1, anything else as Latin-1 octets. Addresses of type of number 1 (international) get a
leading "+" so they read like the platform's numbers.

Pure: no trio, no I/O; times are whatever clock the caller passes.
"""

import attrs

from rabbitry.carriers import InboundEvent
from rabbitry.carriers.smpp._gsm import decode_gsm7
from rabbitry.carriers.smpp._pdu import (
    TLV_MESSAGE_PAYLOAD,
    TLV_RECEIPTED_MESSAGE_ID,
    TLV_SAR_MSG_REF_NUM,
    TLV_SAR_SEGMENT_SEQNUM,
    TLV_SAR_TOTAL_SEGMENTS,
    ShortMessage,
    tlv,
)

UDHI = 0x40
"""esm_class bit: short_message starts with a user data header."""

MAX_PENDING = 10_000
"""Incomplete messages kept at once; past it the oldest is given up on first."""


@attrs.frozen
class Concatenation:
    """Where a part belongs: message `reference`, `total` parts, this one's `sequence` (1-based)."""

    reference: int
    total: int
    sequence: int


@attrs.frozen
class InboundPart:
    """One deliver_sm of an inbound SMS: who, to whom, its place, its payload (UDH removed)."""

    sender: str
    to: str
    data_coding: int
    payload: bytes
    concatenation: Concatenation | None = None
    carrier_id: str = ""


def decode_inbound(message: ShortMessage) -> InboundPart:
    """The part a deliver_sm (not a receipt) carries."""
    payload = message.short_message or tlv(message.tlvs, TLV_MESSAGE_PAYLOAD) or b""
    concatenation = None
    if message.esm_class & UDHI and payload:
        length = payload[0]
        concatenation = _from_udh(payload[1 : 1 + length])
        payload = payload[1 + length :]
    if concatenation is None:
        concatenation = _from_sar(message)
    if concatenation is not None and not 1 <= concatenation.sequence <= concatenation.total:
        concatenation = None  # a place that cannot be: take the part as a whole message
    if concatenation is not None and concatenation.total == 1:
        concatenation = None
    return InboundPart(
        sender=_address(message.source_addr, message.source_addr_ton),
        to=_address(message.destination_addr, message.dest_addr_ton),
        data_coding=message.data_coding,
        payload=payload,
        concatenation=concatenation,
        carrier_id=_carrier_id(message),
    )


def _carrier_id(message: ShortMessage) -> str:
    value = tlv(message.tlvs, TLV_RECEIPTED_MESSAGE_ID)
    return value.rstrip(b"\x00").decode("latin-1").strip() if value else ""


def decode_payload(payload: bytes, data_coding: int) -> str:
    """The text of a payload in `data_coding` (see the module docstring)."""
    if data_coding == 8:
        return payload.decode("utf-16-be", "replace")
    if data_coding == 0 or (data_coding & 0xF4) == 0xF0:
        return decode_gsm7(payload)
    return payload.decode("latin-1")


def _from_udh(header: bytes) -> Concatenation | None:
    offset = 0
    while offset + 2 <= len(header):
        element, length = header[offset], header[offset + 1]
        value = header[offset + 2 : offset + 2 + length]
        offset += 2 + length
        if element == 0x00 and len(value) == 3:
            return Concatenation(value[0], value[1], value[2])
        if element == 0x08 and len(value) == 4:
            return Concatenation(int.from_bytes(value[:2], "big"), value[2], value[3])
    return None


def _from_sar(message: ShortMessage) -> Concatenation | None:
    reference = tlv(message.tlvs, TLV_SAR_MSG_REF_NUM)
    total = tlv(message.tlvs, TLV_SAR_TOTAL_SEGMENTS)
    sequence = tlv(message.tlvs, TLV_SAR_SEGMENT_SEQNUM)
    if reference is None or not total or not sequence:
        return None
    return Concatenation(int.from_bytes(reference, "big"), total[0], sequence[0])


def _address(address: str, ton: int) -> str:
    if ton == 1 and address and not address.startswith("+"):
        return f"+{address}"
    return address


_Key = tuple[str, str, int, int]


@attrs.define
class _Pending:
    deadline: float
    data_coding: int
    parts: dict[int, bytes]
    ids: dict[int, str] = attrs.field(factory=dict)


class Reassembler:
    """Joins the parts of inbound SMS; see the module docstring."""

    def __init__(self, timeout: float, *, max_pending: int = MAX_PENDING) -> None:
        if not timeout > 0:
            raise ValueError(f"Reassembler timeout must be > 0 seconds (got {timeout!r})")
        self.timeout = timeout
        self.max_pending = max_pending
        self._pending: dict[_Key, _Pending] = {}  # insertion order is deadline order

    def add(self, part: InboundPart, now: float) -> InboundEvent | None:
        """The whole SMS when `part` completes it (or is one on its own); None while parts lack."""
        place = part.concatenation
        if place is None:
            return InboundEvent(
                part.sender,
                part.to,
                decode_payload(part.payload, part.data_coding),
                part.carrier_id,
            )
        key = (part.sender, part.to, place.reference, place.total)
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _Pending(now + self.timeout, part.data_coding, {})
        pending.parts[place.sequence] = part.payload
        pending.ids[place.sequence] = part.carrier_id
        if len(pending.parts) < place.total:
            return None
        del self._pending[key]
        return self._event(key, pending)

    def next_deadline(self) -> float | None:
        """When the oldest incomplete message gives up; None when none waits."""
        for pending in self._pending.values():
            return pending.deadline
        return None

    def expired(self, now: float) -> list[InboundEvent]:
        """The incomplete messages whose time is up (or past `max_pending`), with what came."""
        given_up = []
        for key, pending in list(self._pending.items()):
            if pending.deadline > now and len(self._pending) <= self.max_pending:
                break
            del self._pending[key]
            given_up.append(self._event(key, pending))
        return given_up

    @property
    def waiting(self) -> int:
        """Incomplete messages held."""
        return len(self._pending)

    @staticmethod
    def _event(key: _Key, pending: _Pending) -> InboundEvent:
        order = sorted(pending.parts)
        payload = b"".join(pending.parts[sequence] for sequence in order)
        ids = [pending.ids[sequence] for sequence in order]
        carrier_id = ",".join(ids) if all(ids) else ""
        return InboundEvent(
            key[0], key[1], decode_payload(payload, pending.data_coding), carrier_id
        )
