"""The SMPP 3.4 carrier connector (the `smpp` plugin): codec, session, receipts, connector."""

from rabbitry.carriers.smpp._connector import SmppConnector
from rabbitry.carriers.smpp._options import SmppOptions
from rabbitry.carriers.smpp._receipts import normalise_id, parse_receipt
from rabbitry.carriers.smpp._session import BindRefused, ResponseTimeout

__all__ = [
    "BindRefused",
    "ResponseTimeout",
    "SmppConnector",
    "SmppOptions",
    "normalise_id",
    "parse_receipt",
]
