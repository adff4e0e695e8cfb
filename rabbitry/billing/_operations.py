"""The ledger's operations and receipts: tagged, frozen msgspec Structs, one per kind.

    op = Hold(id="send-7f3a", account="42", hold="batch-7f3a", amount=Money.of("4.50", "EUR"))
    wire = OPERATION_ENCODER.encode(op)          # {"kind":"hold","id":...,"amount":{...}}
    assert decode_operation(wire) == op

Every operation carries an `id` chosen by its sender (derived once, reused on every redelivery):
the ledger applies an id once; the same id with the same content replays the first receipt, with
other content it raises `OperationConflict`.

- `OpenAccount`: creates the account in its currency (nothing can move before).
- `TopUp`: paid money in. `BonusGrant`: promotional credit in (its own bucket, spent first).
- `Hold`: reserves `amount` under a hold id (a message or a batch id), bonus first, then paid.
- `Capture`: charges part of a hold (one message of a batch); bonus first, then paid.
- `Release`: hands back what is still held (`amount`, or all of it when None), paid first so the
  bonus stays for the next captures.
- `Refund`: returns captured money of a hold, paid first (undoing the last-spent bucket first).
- `Adjustment`: an operator's signed correction of the paid balance, with a reason.

New fields must always have a default, so old messages still decode.
"""

from decimal import Decimal

import msgspec

from rabbitry.billing._money import Money


class OpenAccount(msgspec.Struct, frozen=True, tag="open_account", tag_field="kind"):
    id: str
    account: str
    currency: str


class TopUp(msgspec.Struct, frozen=True, tag="top_up", tag_field="kind"):
    id: str
    account: str
    amount: Money
    reference: str = ""


class BonusGrant(msgspec.Struct, frozen=True, tag="bonus_grant", tag_field="kind"):
    id: str
    account: str
    amount: Money
    reference: str = ""


class Hold(msgspec.Struct, frozen=True, tag="hold", tag_field="kind"):
    id: str
    account: str
    hold: str
    amount: Money


class Capture(msgspec.Struct, frozen=True, tag="capture", tag_field="kind"):
    """Charges `amount` of `hold`; `message`, `prefix` and `segments` describe it for invoices."""

    id: str
    account: str
    hold: str
    amount: Money
    message: str = ""
    prefix: str = ""
    segments: int = 0


class Release(msgspec.Struct, frozen=True, tag="release", tag_field="kind"):
    """Hands back `amount` of what `hold` still holds, or all of it when `amount` is None."""

    id: str
    account: str
    hold: str
    amount: Money | None = None


class Refund(msgspec.Struct, frozen=True, tag="refund", tag_field="kind"):
    id: str
    account: str
    hold: str
    amount: Money
    reason: str = ""


class Adjustment(msgspec.Struct, frozen=True, tag="adjustment", tag_field="kind"):
    """A signed correction of the paid balance (negative takes money out, never below zero)."""

    id: str
    account: str
    amount: Money
    reason: str = ""


Operation = OpenAccount | TopUp | BonusGrant | Hold | Capture | Release | Refund | Adjustment


class Balance(msgspec.Struct, frozen=True):
    """An account's buckets: `balance` (paid, available), `bonus` (available), `held` (both).

    Decimals encode as strings: `{"balance": "12.50", "bonus": "0.00", ...}`.
    """

    account: str
    currency: str
    balance: Decimal
    bonus: Decimal
    held: Decimal

    @property
    def available(self) -> Decimal:
        """What a hold can reserve: bonus plus paid."""
        return self.balance + self.bonus


class Receipt(msgspec.Struct, frozen=True):
    """What one operation did: how much moved from (or back to) each bucket, and the balance after.

    For a hold or capture, `bonus_part` + `paid_part` is the amount taken; for a release or
    refund, the amount given back; for a top-up, bonus grant or adjustment, the amount added
    (negative for a debit adjustment). `seq` is the ledger entry's number in its store.
    """

    operation: str
    kind: str
    bonus_part: Decimal
    paid_part: Decimal
    balance: Balance
    seq: int = 0


OPERATION_ENCODER = msgspec.json.Encoder()
_OPERATION_DECODER: msgspec.json.Decoder[Operation] = msgspec.json.Decoder(Operation)
_RECEIPT_DECODER = msgspec.json.Decoder(Receipt)


def kind_of(operation: Operation) -> str:
    """The operation's tag: "top_up", "hold", ..."""
    return str(type(operation).__struct_config__.tag)


def encode_operation(operation: Operation) -> bytes:
    """The canonical JSON of an operation: amounts are canonical, so equal content, equal bytes."""
    return OPERATION_ENCODER.encode(operation)


def decode_operation(data: bytes | str) -> Operation:
    return _OPERATION_DECODER.decode(data)


def encode_receipt(receipt: Receipt) -> bytes:
    return OPERATION_ENCODER.encode(receipt)


def decode_receipt(data: bytes | str) -> Receipt:
    return _RECEIPT_DECODER.decode(data)
