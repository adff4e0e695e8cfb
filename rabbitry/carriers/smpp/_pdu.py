"""The SMPP 3.4 wire format: PDU framing, C-octet strings, TLVs, and the PDUs a client uses.

    frame = encode_frame(SUBMIT_SM, 0, 7, ShortMessage(source_addr="Shop", ...).encode())
    reader = FrameReader()
    for pdu in reader.feed(data):          # whole PDUs only; the rest waits for more data
        pdu.command_id, pdu.status, pdu.sequence, pdu.body
    ShortMessage.decode(pdu.body)          # a submit_sm or deliver_sm body
    status_name(0x58)                      # 'ESME_RTHROTTLED'

A PDU is a 16-octet header (`command_length, command_id, command_status, sequence_number`, all
big-endian uint32) and a body of mandatory fields (1-octet integers and NUL-terminated
"C-octet strings" of bounded length) followed by optional TLVs (2-octet tag, 2-octet length,
value). A response's command id is its request's | 0x80000000 and echoes its sequence number.

This module is pure: no trio, no I/O. Raises `PduError` (a `ValueError`) for a body that does
not decode and `FramingError` for a header no stream can recover from.
"""

import struct
from collections.abc import Iterator

import attrs

GENERIC_NACK = 0x80000000
BIND_RECEIVER = 0x00000001
BIND_TRANSMITTER = 0x00000002
SUBMIT_SM = 0x00000004
DELIVER_SM = 0x00000005
UNBIND = 0x00000006
BIND_TRANSCEIVER = 0x00000009
ENQUIRE_LINK = 0x00000015
DATA_SM = 0x00000103
RESPONSE = 0x80000000
"""The bit a response's command id adds to its request's."""

INTERFACE_VERSION = 0x34
HEADER_LENGTH = 16
MAX_PDU_LENGTH = 1 << 17
"""Longer PDUs are refused as a corrupt stream (a message_payload is at most 64 KiB)."""

# TLV tags (SMPP 3.4 section 5.3.2).
TLV_RECEIPTED_MESSAGE_ID = 0x001E
TLV_SAR_MSG_REF_NUM = 0x020C
TLV_SAR_TOTAL_SEGMENTS = 0x020E
TLV_SAR_SEGMENT_SEQNUM = 0x020F
TLV_NETWORK_ERROR_CODE = 0x0423
TLV_MESSAGE_PAYLOAD = 0x0424
TLV_MESSAGE_STATE = 0x0427

# command_status values this package acts on (the full list is in STATUS_NAMES).
ESME_ROK = 0x00
ESME_RINVCMDLEN = 0x02
ESME_RINVCMDID = 0x03
ESME_RINVBNDSTS = 0x04
ESME_RSYSERR = 0x08
ESME_RBINDFAIL = 0x0D
ESME_RINVPASWD = 0x0E
ESME_RINVSYSID = 0x0F
ESME_RMSGQFUL = 0x14
ESME_RTHROTTLED = 0x58
ESME_RX_T_APPN = 0x64

STATUS_NAMES = {
    0x00: "ESME_ROK",
    0x01: "ESME_RINVMSGLEN",
    0x02: "ESME_RINVCMDLEN",
    0x03: "ESME_RINVCMDID",
    0x04: "ESME_RINVBNDSTS",
    0x05: "ESME_RALYBND",
    0x06: "ESME_RINVPRTFLG",
    0x07: "ESME_RINVREGDLVFLG",
    0x08: "ESME_RSYSERR",
    0x0A: "ESME_RINVSRCADR",
    0x0B: "ESME_RINVDSTADR",
    0x0C: "ESME_RINVMSGID",
    0x0D: "ESME_RBINDFAIL",
    0x0E: "ESME_RINVPASWD",
    0x0F: "ESME_RINVSYSID",
    0x11: "ESME_RCANCELFAIL",
    0x13: "ESME_RREPLACEFAIL",
    0x14: "ESME_RMSGQFUL",
    0x15: "ESME_RINVSERTYP",
    0x33: "ESME_RINVNUMDESTS",
    0x34: "ESME_RINVDLNAME",
    0x40: "ESME_RINVDESTFLAG",
    0x42: "ESME_RINVSUBREP",
    0x43: "ESME_RINVESMCLASS",
    0x44: "ESME_RCNTSUBDL",
    0x45: "ESME_RSUBMITFAIL",
    0x48: "ESME_RINVSRCTON",
    0x49: "ESME_RINVSRCNPI",
    0x50: "ESME_RINVDSTTON",
    0x51: "ESME_RINVDSTNPI",
    0x53: "ESME_RINVSYSTYP",
    0x54: "ESME_RINVREPFLAG",
    0x55: "ESME_RINVNUMMSGS",
    0x58: "ESME_RTHROTTLED",
    0x61: "ESME_RINVSCHED",
    0x62: "ESME_RINVEXPIRY",
    0x63: "ESME_RINVDFTMSGID",
    0x64: "ESME_RX_T_APPN",
    0x65: "ESME_RX_P_APPN",
    0x66: "ESME_RX_R_APPN",
    0x67: "ESME_RQUERYFAIL",
    0xC0: "ESME_RINVOPTPARSTREAM",
    0xC1: "ESME_ROPTPARNOTALLWD",
    0xC2: "ESME_RINVPARLEN",
    0xC3: "ESME_RMISSINGOPTPARAM",
    0xC4: "ESME_RINVOPTPARAMVAL",
    0xFE: "ESME_RDELIVERYFAILURE",
    0xFF: "ESME_RUNKNOWNERR",
}

_HEADER = struct.Struct(">IIII")
_TLV_HEAD = struct.Struct(">HH")


class PduError(ValueError):
    """A PDU body does not decode (a string without its NUL, a field past the end, ...)."""


class FramingError(PduError):
    """A header no stream recovers from (a command_length out of range): the stream is corrupt."""


def status_name(status: int) -> str:
    """The ESME_* name of a command_status, or its hex form (`0x00000401`) when it has none."""
    return STATUS_NAMES.get(status) or f"0x{status:08X}"


@attrs.frozen(slots=True)
class Frame:
    """One PDU off the wire: its header fields and its undecoded body."""

    command_id: int
    status: int
    sequence: int
    body: bytes


def encode_frame(command_id: int, status: int, sequence: int, body: bytes = b"") -> bytes:
    """The PDU of that header and `body`, with its command_length."""
    return _HEADER.pack(HEADER_LENGTH + len(body), command_id, status, sequence) + body


class FrameReader:
    """Cuts a byte stream into PDUs; keeps an incomplete one until the rest arrives."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> Iterator[Frame]:
        """Adds `data` and yields every PDU now complete; raises `FramingError` on a bad length."""
        buffer = self._buffer
        buffer += data
        offset = 0
        try:
            while len(buffer) - offset >= HEADER_LENGTH:
                length, command_id, status, sequence = _HEADER.unpack_from(buffer, offset)
                if not HEADER_LENGTH <= length <= MAX_PDU_LENGTH:
                    raise FramingError(
                        f"SMPP command_length must be {HEADER_LENGTH}..{MAX_PDU_LENGTH} octets"
                        f" (got {length} for command 0x{command_id:08X},"
                        f" sequence {sequence}): the stream is corrupt"
                    )
                if len(buffer) - offset < length:
                    break
                body = bytes(buffer[offset + HEADER_LENGTH : offset + length])
                offset += length
                yield Frame(command_id, status, sequence, body)
        finally:
            del buffer[:offset]

    @property
    def buffered(self) -> int:
        """Octets waiting for the rest of their PDU."""
        return len(self._buffer)


def c_string(value: str, limit: int, field: str) -> bytes:
    """`value` as a C-octet string of at most `limit` octets with its NUL; ValueError if longer."""
    data = value.encode("latin-1")
    if len(data) >= limit or b"\x00" in data:
        raise ValueError(
            f"SMPP {field} must be at most {limit - 1} octets without NUL (got {value!r})"
        )
    return data + b"\x00"


class BodyReader:
    """Reads a PDU body's mandatory fields in order, then its TLVs."""

    def __init__(self, body: bytes, pdu: str) -> None:
        self.body = body
        self.offset = 0
        self.pdu = pdu

    def string(self, limit: int, field: str) -> str:
        """A C-octet string of at most `limit` octets, NUL included."""
        end = self.body.find(b"\x00", self.offset, self.offset + limit)
        if end < 0:
            raise PduError(
                f"SMPP {self.pdu}.{field} must be a NUL-terminated string of at most {limit}"
                f" octets (got {bytes(self.body[self.offset : self.offset + limit])!r})"
            )
        value = self.body[self.offset : end].decode("latin-1")
        self.offset = end + 1
        return value

    def octet(self, field: str) -> int:
        """A 1-octet integer."""
        if self.offset >= len(self.body):
            raise PduError(f"SMPP {self.pdu}.{field} is missing (the body ends at {self.offset})")
        value = self.body[self.offset]
        self.offset += 1
        return value

    def octets(self, length: int, field: str) -> bytes:
        """`length` raw octets."""
        end = self.offset + length
        if end > len(self.body):
            raise PduError(
                f"SMPP {self.pdu}.{field} must be {length} octets"
                f" (only {len(self.body) - self.offset} left in the body)"
            )
        value = self.body[self.offset : end]
        self.offset = end
        return value

    def tlvs(self) -> tuple[tuple[int, bytes], ...]:
        """The TLVs from here to the end of the body."""
        found = []
        body = self.body
        while self.offset < len(body):
            if len(body) - self.offset < _TLV_HEAD.size:
                raise PduError(f"SMPP {self.pdu} ends inside a TLV header at {self.offset}")
            tag, length = _TLV_HEAD.unpack_from(body, self.offset)
            self.offset += _TLV_HEAD.size
            found.append((tag, self.octets(length, f"TLV 0x{tag:04X}")))
        return tuple(found)


def encode_tlvs(tlvs: tuple[tuple[int, bytes], ...]) -> bytes:
    """TLVs as they go after the mandatory fields."""
    return b"".join(_TLV_HEAD.pack(tag, len(value)) + value for tag, value in tlvs)


def tlv(tlvs: tuple[tuple[int, bytes], ...], tag: int) -> bytes | None:
    """The value of the first TLV of `tag`, or None."""
    for found, value in tlvs:
        if found == tag:
            return value
    return None


@attrs.frozen(slots=True)
class Bind:
    """A bind_transmitter / bind_receiver / bind_transceiver body."""

    system_id: str
    password: str
    system_type: str = ""
    interface_version: int = INTERFACE_VERSION
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""

    def encode(self) -> bytes:
        return b"".join(
            (
                c_string(self.system_id, 16, "system_id"),
                c_string(self.password, 9, "password"),
                c_string(self.system_type, 13, "system_type"),
                bytes((self.interface_version, self.addr_ton, self.addr_npi)),
                c_string(self.address_range, 41, "address_range"),
            )
        )

    @classmethod
    def decode(cls, body: bytes) -> "Bind":
        read = BodyReader(body, "bind")
        return cls(
            system_id=read.string(16, "system_id"),
            password=read.string(9, "password"),
            system_type=read.string(13, "system_type"),
            interface_version=read.octet("interface_version"),
            addr_ton=read.octet("addr_ton"),
            addr_npi=read.octet("addr_npi"),
            address_range=read.string(41, "address_range"),
        )


def decode_message_id(body: bytes, pdu: str) -> str:
    """The message_id (or system_id) leading a *_resp body; "" for an empty body (an error)."""
    if not body:
        return ""
    return BodyReader(body, pdu).string(65, "message_id")


@attrs.frozen(slots=True)
class ShortMessage:
    """A submit_sm or deliver_sm body (the two share their fields); `tlvs` are (tag, value)."""

    source_addr: str = ""
    destination_addr: str = ""
    short_message: bytes = b""
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    tlvs: tuple[tuple[int, bytes], ...] = ()

    def encode(self) -> bytes:
        if len(self.short_message) > 254:
            raise ValueError(
                f"SMPP short_message must be at most 254 octets (got {len(self.short_message)});"
                " send a longer text in parts"
            )
        return b"".join(
            (
                c_string(self.service_type, 6, "service_type"),
                bytes((self.source_addr_ton, self.source_addr_npi)),
                c_string(self.source_addr, 21, "source_addr"),
                bytes((self.dest_addr_ton, self.dest_addr_npi)),
                c_string(self.destination_addr, 21, "destination_addr"),
                bytes((self.esm_class, self.protocol_id, self.priority_flag)),
                c_string(self.schedule_delivery_time, 17, "schedule_delivery_time"),
                c_string(self.validity_period, 17, "validity_period"),
                bytes(
                    (
                        self.registered_delivery,
                        self.replace_if_present_flag,
                        self.data_coding,
                        self.sm_default_msg_id,
                        len(self.short_message),
                    )
                ),
                self.short_message,
                encode_tlvs(self.tlvs),
            )
        )

    @classmethod
    def decode(cls, body: bytes, pdu: str = "deliver_sm") -> "ShortMessage":
        read = BodyReader(body, pdu)
        service_type = read.string(6, "service_type")
        source_addr_ton, source_addr_npi = read.octet("source_addr_ton"), read.octet("npi")
        source_addr = read.string(21, "source_addr")
        dest_addr_ton, dest_addr_npi = read.octet("dest_addr_ton"), read.octet("dest_addr_npi")
        destination_addr = read.string(21, "destination_addr")
        esm_class, protocol_id = read.octet("esm_class"), read.octet("protocol_id")
        priority_flag = read.octet("priority_flag")
        schedule_delivery_time = read.string(17, "schedule_delivery_time")
        validity_period = read.string(17, "validity_period")
        registered_delivery = read.octet("registered_delivery")
        replace_if_present_flag = read.octet("replace_if_present_flag")
        data_coding, sm_default_msg_id = read.octet("data_coding"), read.octet("sm_default_msg_id")
        short_message = read.octets(read.octet("sm_length"), "short_message")
        return cls(
            source_addr=source_addr,
            destination_addr=destination_addr,
            short_message=short_message,
            service_type=service_type,
            source_addr_ton=source_addr_ton,
            source_addr_npi=source_addr_npi,
            dest_addr_ton=dest_addr_ton,
            dest_addr_npi=dest_addr_npi,
            esm_class=esm_class,
            protocol_id=protocol_id,
            priority_flag=priority_flag,
            schedule_delivery_time=schedule_delivery_time,
            validity_period=validity_period,
            registered_delivery=registered_delivery,
            replace_if_present_flag=replace_if_present_flag,
            data_coding=data_coding,
            sm_default_msg_id=sm_default_msg_id,
            tlvs=read.tlvs(),
        )

    @classmethod
    def decode_data_sm(cls, body: bytes) -> "ShortMessage":
        """A data_sm body, as a ShortMessage whose text is in the message_payload TLV."""
        read = BodyReader(body, "data_sm")
        service_type = read.string(6, "service_type")
        source_addr_ton, source_addr_npi = read.octet("source_addr_ton"), read.octet("npi")
        source_addr = read.string(65, "source_addr")
        dest_addr_ton, dest_addr_npi = read.octet("dest_addr_ton"), read.octet("dest_addr_npi")
        destination_addr = read.string(65, "destination_addr")
        esm_class, registered_delivery = read.octet("esm_class"), read.octet("registered")
        data_coding = read.octet("data_coding")
        tlvs = read.tlvs()
        return cls(
            source_addr=source_addr,
            destination_addr=destination_addr,
            short_message=tlv(tlvs, TLV_MESSAGE_PAYLOAD) or b"",
            service_type=service_type,
            source_addr_ton=source_addr_ton,
            source_addr_npi=source_addr_npi,
            dest_addr_ton=dest_addr_ton,
            dest_addr_npi=dest_addr_npi,
            esm_class=esm_class,
            registered_delivery=registered_delivery,
            data_coding=data_coding,
            tlvs=tlvs,
        )
