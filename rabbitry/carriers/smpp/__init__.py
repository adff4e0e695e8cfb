"""The SMPP 3.4 carrier connector (the `smpp` plugin): codec, session, receipts, connector."""

from rabbitry.carriers.smpp._connector import SmppConnector
from rabbitry.carriers.smpp._gsm import encode_gsm7
from rabbitry.carriers.smpp._options import SmppOptions
from rabbitry.carriers.smpp._pdu import BIND_TRANSCEIVER, SUBMIT_SM, Bind, ShortMessage
from rabbitry.carriers.smpp._receipts import normalise_id, parse_receipt
from rabbitry.carriers.smpp._session import BindRefused, ResponseTimeout

__all__ = [
    "BIND_TRANSCEIVER",
    "SUBMIT_SM",
    "Bind",
    "BindRefused",
    "ResponseTimeout",
    "ShortMessage",
    "SmppConnector",
    "SmppOptions",
    "encode_gsm7",
    "normalise_id",
    "parse_receipt",
]
