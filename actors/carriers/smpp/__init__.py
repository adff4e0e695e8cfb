"""The SMPP 3.4 carrier connector (the `smpp` plugin): codec, session, receipts, connector."""

from actors.carriers.smpp._connector import SmppConnector
from actors.carriers.smpp._options import SmppOptions
from actors.carriers.smpp._receipts import normalise_id, parse_receipt
from actors.carriers.smpp._session import BindRefused, ResponseTimeout

__all__ = [
    "BindRefused",
    "ResponseTimeout",
    "SmppConnector",
    "SmppOptions",
    "normalise_id",
    "parse_receipt",
]
