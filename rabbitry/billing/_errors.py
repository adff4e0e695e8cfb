"""The SMS domain errors: one small tree, each class also inheriting the stdlib error to catch.

Every message is one sentence: the rule, the offending value with `!r`, where it is, and the fix.

    try:
        ledger.apply(Hold(id="op-1", account="42", hold="batch-7", amount=price))
    except InsufficientFunds as exc:     # also a ValueError
        answer_402(str(exc))
    except OperationConflict:            # also a ValueError: the id was reused for other content
        ...
"""

from decimal import Decimal

from rabbitry.storage import StoreUnavailable


class SmsError(Exception):
    """Base of every error raised by `rabbitry.billing`."""


class InvalidMoney(SmsError, TypeError):  # noqa: N818 - the names of the public contract
    """An amount was built from a float, a non-number or with more decimals than the rate scale."""


class InvalidCurrency(SmsError, ValueError):  # noqa: N818 - the names of the public contract
    """A currency code is not three upper-case ISO 4217 letters."""


class CurrencyMismatch(SmsError, ValueError):  # noqa: N818 - the names of the public contract
    """Amounts of two currencies were combined, or an amount hit another currency's account."""


class InvalidNumber(SmsError, ValueError):  # noqa: N818 - the names of the public contract
    """A destination number is not E.164 ("+" then 8 to 15 digits, the first not 0)."""


class InvalidRateCard(SmsError, ValueError):  # noqa: N818 - the names of the public contract
    """A `[rates]` table has a key or a value that cannot be a rate."""


class NoRoute(SmsError, LookupError):  # noqa: N818 - the names of the public contract
    """No rate matches a destination and the rate card has no default."""


class LedgerError(SmsError):
    """Base of the ledger's refusals; nothing was written when one is raised."""


class InsufficientFunds(LedgerError, ValueError):  # noqa: N818 - the names of the public contract
    """A hold or a debit asked for more than the account has available (bonus plus paid)."""

    def __init__(self, account: str, amount: Decimal, available: Decimal, currency: str) -> None:
        super().__init__(
            f"account {account!r} has {available} {currency} available, less than the"
            f" {amount} {currency} asked; top up the account or send less"
        )
        self.account = account
        self.amount = amount
        self.available = available


class LedgerUnavailable(LedgerError, StoreUnavailable):  # noqa: N818 - the public contract
    """The ledger's (or the records') database could not run the transaction (locked, gone,
    full); retry later. A `ConnectionError`."""


class FencedOut(LedgerError, RuntimeError):  # noqa: N818 - the names of the public contract
    """A write made for a partition owner that is no longer the owner: another consumer took the
    partition's fence (a newer epoch) since; nothing was written. The stale owner stops handling
    that partition; the new owner handles the command again (rabbitry.billing._store)."""

    def __init__(self, layout: str, partition: int, epoch: int, current: int | None) -> None:
        super().__init__(
            f"partition {partition!r} of {layout!r} is fenced at epoch {current!r}, past this"
            f" owner's {epoch!r}: another consumer took it over; nothing was written, stop"
            " handling the partition and leave the command to its new owner"
        )
        self.layout = layout
        self.partition = partition
        self.epoch = epoch
        self.current = current


class OperationConflict(LedgerError, ValueError):  # noqa: N818 - the names of the public contract
    """An operation id already applied came back with different content."""


class UnknownAccount(LedgerError, LookupError):  # noqa: N818 - the names of the public contract
    """An operation names an account that was never opened."""


class UnknownHold(LedgerError, LookupError):  # noqa: N818 - the names of the public contract
    """A capture, release or refund names a hold the account does not have."""


class InvalidOperation(LedgerError, ValueError):  # noqa: N818 - the names of the public contract
    """An operation breaks a ledger rule: a non-positive amount, a capture beyond the hold, ..."""


def conflict_error(operation_id: str, first: str, again: str) -> OperationConflict:
    return OperationConflict(
        f"operation id {operation_id!r} was already applied as {first}, and came again with"
        f" other content ({again}); an operation id names one operation forever, so use a new id"
    )


def unknown_account_error(account: str) -> UnknownAccount:
    return UnknownAccount(
        f"account {account!r} is not open in the ledger; open it (OpenAccount) before moving money"
    )


def unknown_hold_error(account: str, hold: str) -> UnknownHold:
    return UnknownHold(
        f"account {account!r} has no hold {hold!r}; capture, release or refund only a placed hold"
    )


def currency_mismatch_error(account: str, expected: str, got: str) -> CurrencyMismatch:
    return CurrencyMismatch(
        f"account {account!r} keeps its money in {expected}, not {got!r};"
        f" send amounts in {expected}"
    )
