"""Delivery receipts: a deliver_sm (or data_sm) with `esm_class & 0x04` becomes a `DeliveryEvent`.

    is_receipt(message)                           # esm_class says SMSC delivery receipt
    parse_receipt(message, id_format="text")      # DeliveryEvent('7f3a9c', 'delivered', '000')
    normalise_id("00007F3A9C", "text")            # '7f3a9c'
    normalise_id("0x1F", "hex"), normalise_id("031", "decimal")   # ('31', '31')

The TLVs are preferred when present: `receipted_message_id` (0x001E), `message_state`
(0x0427, one octet) and `network_error_code` (0x0423: a type octet and a 2-octet code). What they
lack comes from the text of SMPP 3.4 appendix B:

    id:7F3A9C sub:001 dlvrd:001 submit date:2601011200 done date:2601011201 stat:DELIVRD err:000

States map to a `DeliveryStatus` as sms-domain.md 1.3 says: DELIVRD -> delivered; UNDELIV and
EXPIRED -> undelivered; REJECTD, DELETED and UNKNOWN -> failed; ENROUTE and ACCEPTD -> sent (not
final). Long spellings (DELIVERED, UNDELIVERABLE, ...) are read too. `error` is the carrier's raw
code: the text's `err:` field, else the TLV's code as three digits, else "".

Carrier ids are normalised, so that the id a submit_sm_resp gave and the one a receipt names
compare equal whatever the carrier's habits (jookies/jasmin#535, #643, #916):

- "text" (the default): trimmed, lower case, leading zeros dropped ("0" stays "0");
- "hex": read as a hexadecimal number (an optional 0x), written in decimal;
- "decimal": read as a decimal number, written in decimal.

So a carrier that answers submits in hex and reports in decimal is configured with
`submit_id_format = "hex"` and `receipt_id_format = "decimal"`: both sides become the decimal
number. An id that does not parse as the number its format says is normalised as "text".

Pure: no trio, no I/O.
"""

import re
from typing import Literal

from rabbitry.carriers import DeliveryEvent, DeliveryStatus
from rabbitry.carriers.smpp._gsm import decode_gsm7
from rabbitry.carriers.smpp._pdu import (
    TLV_MESSAGE_PAYLOAD,
    TLV_MESSAGE_STATE,
    TLV_NETWORK_ERROR_CODE,
    TLV_RECEIPTED_MESSAGE_ID,
    ShortMessage,
    tlv,
)

IdFormat = Literal["text", "hex", "decimal"]
ID_FORMATS: tuple[IdFormat, ...] = ("text", "hex", "decimal")

RECEIPT_ESM_CLASSES = 0x04 | 0x20
"""esm_class message types that are receipts: SMSC delivery receipt, intermediate notification."""

STATES: dict[str, DeliveryStatus] = {
    "DELIVRD": "delivered",
    "DELIVERED": "delivered",
    "UNDELIV": "undelivered",
    "UNDELIVERABLE": "undelivered",
    "EXPIRED": "undelivered",
    "REJECTD": "failed",
    "REJECTED": "failed",
    "DELETED": "failed",
    "UNKNOWN": "failed",
    "ENROUTE": "sent",
    "ACCEPTD": "sent",
    "ACCEPTED": "sent",
}
"""The appendix B `stat:` values (and their long spellings) and what they mean to the platform."""

MESSAGE_STATES: dict[int, str] = {
    1: "ENROUTE",
    2: "DELIVRD",
    3: "EXPIRED",
    4: "DELETED",
    5: "UNDELIV",
    6: "ACCEPTD",
    7: "UNKNOWN",
    8: "REJECTD",
}
"""The message_state TLV's values, by their appendix B names."""

_ID = re.compile(rb"\bid:\s*([^\s]+)", re.IGNORECASE)
_STAT = re.compile(rb"\bstat:\s*([A-Za-z_]+)", re.IGNORECASE)
_ERR = re.compile(rb"\berr:\s*([0-9A-Za-z]+)", re.IGNORECASE)


class ReceiptError(ValueError):
    """A receipt that names no message id or no state this module knows."""


def is_receipt(message: ShortMessage) -> bool:
    """Whether a deliver_sm's esm_class marks it as a delivery receipt (not an inbound SMS)."""
    return bool(message.esm_class & RECEIPT_ESM_CLASSES)


def normalise_id(raw: str, id_format: IdFormat = "text") -> str:
    """A carrier id in the one form both submit answers and receipts are compared in."""
    value = raw.strip()
    if id_format == "hex":
        digits = value[2:] if value[:2].lower() == "0x" else value
        if digits and all(char in "0123456789abcdefABCDEF" for char in digits):
            return str(int(digits, 16))
    elif id_format == "decimal" and value.isascii() and value.isdigit():
        return str(int(value))
    return value.lower().lstrip("0") or ("0" if value else "")


def parse_receipt(message: ShortMessage, id_format: IdFormat = "text") -> DeliveryEvent:
    """The delivery event a receipt carries; raises `ReceiptError` when it names no id or state."""
    text = _receipt_text(message)
    tlv_id = tlv(message.tlvs, TLV_RECEIPTED_MESSAGE_ID)
    raw_id = tlv_id.rstrip(b"\x00").decode("latin-1") if tlv_id else _field(_ID, text)
    if not raw_id:
        raise ReceiptError(
            f"delivery receipt from {message.source_addr!r} names no message id (no"
            f" receipted_message_id TLV, no id: field in {_shown(message)!r})"
        )
    tlv_state = tlv(message.tlvs, TLV_MESSAGE_STATE)
    state = MESSAGE_STATES.get(tlv_state[0], "") if tlv_state else ""
    state = state or _field(_STAT, text).upper()
    status = STATES.get(state)
    if status is None:
        raise ReceiptError(
            f"delivery receipt for {raw_id!r} has no known state (got {state!r}; known:"
            f" {', '.join(sorted(STATES))} or a message_state TLV of 1..8)"
        )
    error = _field(_ERR, text)
    network_error = tlv(message.tlvs, TLV_NETWORK_ERROR_CODE)
    if not error and network_error is not None and len(network_error) == 3:
        error = f"{int.from_bytes(network_error[1:], 'big'):03d}"
    return DeliveryEvent(normalise_id(raw_id, id_format), status, error)


def _field(pattern: re.Pattern[bytes], text: bytes) -> str:
    match = pattern.search(text)
    return match.group(1).decode("latin-1") if match else ""


def _receipt_text(message: ShortMessage) -> bytes:
    text = message.short_message or tlv(message.tlvs, TLV_MESSAGE_PAYLOAD) or b""
    if message.data_coding == 8:  # a receipt in UCS-2: its fields are ASCII anyway
        return text.decode("utf-16-be", "replace").encode("latin-1", "replace")
    return text


def _shown(message: ShortMessage) -> str:
    if message.data_coding == 8:
        return message.short_message.decode("utf-16-be", "replace")
    if message.data_coding == 0:
        return decode_gsm7(message.short_message)
    return message.short_message.decode("latin-1")
