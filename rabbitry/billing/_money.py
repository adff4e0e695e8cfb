"""Money: an exact decimal amount with an ISO 4217 currency, never a float.

    >>> price = Money.of("0.0450", "EUR") * 3          # a rate times segments
    >>> price
    Money(amount=Decimal('0.135'), currency='EUR')
    >>> price.rounded()                                # to the minor unit, HALF_UP
    Money(amount=Decimal('0.14'), currency='EUR')

Amounts carry at most `SCALE` (6) decimals: the scale of rates (0.0075 USD per segment), so a
price (segments x rate) and any sum of prices are exact and the ledger never rounds. Rounding
happens once, where money is invoiced: each invoice line (quantity x unit rate) is rounded HALF_UP
to the currency's minor unit, then the lines are summed (sms-domain.md section 3). A per-message
rounding would bill 1,200 messages at 0.0075 as 12.00 instead of 9.00.

An amount is kept in one canonical form (at least the minor unit's decimals, trailing zeros beyond
it dropped: 10 EUR is "10.00", 0.0450 is "0.045"), so equal amounts encode to equal bytes. msgspec
encodes the amount as a decimal string.

Arithmetic stays within one currency: adding, subtracting or comparing EUR with USD raises
`CurrencyMismatch`. Building an amount from a float raises `InvalidMoney` (a float cannot hold
0.1 exactly); pass a string, an int or a `Decimal`. On the wire msgspec reads a JSON number from
its text straight into a Decimal (never through a float), so `{"amount": 0.3}` is exactly 0.3.
"""

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Self

import msgspec
from msgspec.structs import force_setattr

from rabbitry.billing._errors import CurrencyMismatch, InvalidCurrency, InvalidMoney

SCALE = 6
_CODE = re.compile(r"[A-Z]{3}")
# ISO 4217 minor units that are not 2; every other well-formed code is taken to have 2.
_MINOR_UNITS = {
    **dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG"), 0),
    **dict.fromkeys(("RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}


_STEPS = [Decimal(1).scaleb(-places) for places in range(SCALE + 1)]


def check_currency(currency: object) -> str:
    """Returns `currency` if it is three upper-case letters (ISO 4217), else raises."""
    if not isinstance(currency, str) or not _CODE.fullmatch(currency):
        raise InvalidCurrency(
            f"a currency must be an ISO 4217 code of three upper-case letters (got {currency!r});"
            " write e.g. 'EUR' or 'USD'"
        )
    return currency


def minor_unit(currency: str) -> int:
    """The decimals of the currency's minor unit: 2 for EUR, 0 for JPY, 3 for KWD."""
    return _MINOR_UNITS.get(check_currency(currency), 2)


def to_decimal(value: object, what: str = "an amount") -> Decimal:
    """`value` as an exact finite Decimal of at most `SCALE` decimals; floats are refused."""
    if isinstance(value, float):
        raise InvalidMoney(
            f"{what} must not be a float (got {value!r}), which cannot hold decimal money"
            f" exactly; pass a string such as {str(value)!r} or a Decimal"
        )
    if isinstance(value, bool) or not isinstance(value, int | str | Decimal):
        raise InvalidMoney(f"{what} must be a Decimal, an int or a decimal string (got {value!r})")
    try:
        amount = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        raise InvalidMoney(f"{what} must be a decimal number (got {value!r})") from None
    exponent = amount.as_tuple().exponent
    if not amount.is_finite() or not isinstance(exponent, int):
        raise InvalidMoney(f"{what} must be a finite number (got {value!r})")
    try:
        exact = amount.quantize(Decimal(1).scaleb(-SCALE))
    except InvalidOperation:  # more digits than the context's precision (28) can hold
        raise InvalidMoney(
            f"{what} is too large to be money (got {value!r}); send an amount of at most"
            f" {28 - SCALE} digits before the decimal point"
        ) from None
    if amount != exact:
        raise InvalidMoney(
            f"{what} has more than {SCALE} decimals (got {value!r}); round it to {SCALE} first"
        )
    return amount


def canonical(amount: Decimal, currency: str) -> Decimal:
    """`amount` with the currency's minor-unit decimals at least and no trailing zeros beyond."""
    places = _MINOR_UNITS.get(currency, 2)  # the currency was checked when the amount was made
    exponent = amount.normalize().as_tuple().exponent
    assert isinstance(exponent, int)  # finite: to_decimal checked it
    return amount.quantize(_STEPS[min(-exponent, SCALE) if exponent < -places else places])


class Money(msgspec.Struct, frozen=True):
    """An amount of one currency, exact to `SCALE` decimals (see the module docstring).

    Raises `InvalidMoney` for a float or over-precise amount, `InvalidCurrency` for a bad code.
    """

    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        currency = check_currency(self.currency)
        force_setattr(self, "amount", canonical(to_decimal(self.amount), currency))

    @classmethod
    def of(cls, amount: object, currency: str) -> Self:
        """`Money.of("12.50", "EUR")`: an amount from a string, an int or a Decimal."""
        return cls(to_decimal(amount), currency)

    @classmethod
    def zero(cls, currency: str) -> Self:
        return cls(Decimal(0), currency)

    def _same(self, other: object, operation: str) -> "Money":
        if not isinstance(other, Money):
            raise InvalidMoney(f"cannot {operation} {self} and {other!r}, which is not Money")
        if other.currency != self.currency:
            raise CurrencyMismatch(
                f"cannot {operation} {self} and {other}: the currencies differ;"
                " convert one of them first"
            )
        return other

    def __add__(self, other: object) -> "Money":
        return Money(self.amount + self._same(other, "add").amount, self.currency)

    def __sub__(self, other: object) -> "Money":
        return Money(self.amount - self._same(other, "subtract").amount, self.currency)

    def __neg__(self) -> "Money":
        return Money(-self.amount, self.currency)

    def __mul__(self, count: object) -> "Money":
        """Money times a whole count (segments, messages); other factors go through `scaled`."""
        if isinstance(count, bool) or not isinstance(count, int):
            raise InvalidMoney(
                f"Money multiplies by a whole count only (got {count!r}); use scaled() for a rate"
            )
        return Money(self.amount * count, self.currency)

    __rmul__ = __mul__

    def __lt__(self, other: object) -> bool:
        return self.amount < self._same(other, "compare").amount

    def __le__(self, other: object) -> bool:
        return self.amount <= self._same(other, "compare").amount

    def __gt__(self, other: object) -> bool:
        return self.amount > self._same(other, "compare").amount

    def __ge__(self, other: object) -> bool:
        return self.amount >= self._same(other, "compare").amount

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"

    @property
    def is_zero(self) -> bool:
        return self.amount == 0

    def rounded(self) -> "Money":
        """Rounded HALF_UP to the currency's minor unit (0.135 EUR -> 0.14 EUR)."""
        step = Decimal(1).scaleb(-minor_unit(self.currency))
        return Money(self.amount.quantize(step, rounding=ROUND_HALF_UP), self.currency)

    def scaled(self, factor: object) -> "Money":
        """Times a decimal factor (a tax rate), rounded HALF_UP to the minor unit."""
        exact = self.amount * to_decimal(factor, "a factor")
        step = Decimal(1).scaleb(-minor_unit(self.currency))
        return Money(exact.quantize(step, rounding=ROUND_HALF_UP), self.currency)


def money_sum(amounts: Any, currency: str) -> Money:
    """The sum of an iterable of Money of `currency` (zero when empty)."""
    total = Money.zero(currency)
    for amount in amounts:
        total = total + amount
    return total
