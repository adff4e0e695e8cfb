"""Pricing: a rate card by longest destination prefix, and the quote of one message.

    >>> card = RateCard.from_table({"default": "0.0500", "+33": "0.0450"}, currency="EUR")
    >>> quote = card.quote("+33612345678", "Hello")
    >>> quote.prefix, quote.segments, str(quote.price)
    ('+33', 1, '0.045 EUR')

A rate card is the config's `[rates]` table: `default` (optional) plus E.164 prefix keys ("+33",
"+4475"), each a decimal string of at most 6 decimals per segment. The rate of a destination is the
one of its longest matching prefix, else the default; price = segments x rate, exact (rounding
happens per invoice line, see `rabbitry.billing._money`).

Destinations are E.164: "+" then 8 to 15 digits, the first not 0, no spaces (normalise before
pricing).

Raises: `InvalidRateCard` for a bad key or value (naming `rates.<key>`), `InvalidNumber` for a
destination that is not E.164, `NoRoute` when no prefix matches and there is no default.
"""

import re
from collections.abc import Mapping
from decimal import Decimal

import attrs

from rabbitry.billing._encoding import Encoding, segment
from rabbitry.billing._errors import InvalidMoney, InvalidNumber, InvalidRateCard, NoRoute
from rabbitry.billing._money import Money, check_currency, to_decimal

_E164 = re.compile(r"\+[1-9][0-9]{7,14}")
_PREFIX = re.compile(r"\+[0-9]{1,15}")
DEFAULT = "default"


def check_number(number: object) -> str:
    """Returns `number` if it is E.164 ("+" then 8 to 15 digits, the first not 0: no country
    code starts with 0), else raises `InvalidNumber`."""
    if not isinstance(number, str) or not _E164.fullmatch(number):
        raise InvalidNumber(
            f"destination {number!r} is not an E.164 number; write '+', the country code and"
            " the number, 8 to 15 digits in all, the first not 0, without spaces"
            " (e.g. '+33612345678')"
        )
    return number


@attrs.frozen
class Quote:
    """The price of one message to one destination.

    `prefix` is the rate card key that matched ("default" for the default rate): invoices group
    their lines by it.
    """

    to: str
    prefix: str
    encoding: Encoding
    segments: int
    rate: Money
    price: Money


@attrs.frozen
class RateCard:
    """Rates per segment by E.164 prefix, plus an optional default; all in one currency."""

    currency: str
    rates: Mapping[str, Money] = attrs.field(factory=dict)
    default: Money | None = None

    @classmethod
    def from_table(cls, table: Mapping[str, object], currency: str) -> "RateCard":
        """Builds a card from a `[rates]` table: `{"default": "0.05", "+33": "0.045"}`."""
        check_currency(currency)
        rates: dict[str, Money] = {}
        default: Money | None = None
        for key, value in table.items():
            if key != DEFAULT and not _PREFIX.fullmatch(key):
                raise InvalidRateCard(
                    f"rates.{key!r} is neither 'default' nor an E.164 prefix;"
                    ' write a key such as "+33" (quoted in TOML)'
                )
            rate = _rate(key, value, currency)
            if key == DEFAULT:
                default = rate
            else:
                rates[key] = rate
        return cls(currency, rates, default)

    def rate_for(self, number: str) -> tuple[str, Money]:
        """The (prefix, rate) of the longest prefix of `number`, or ("default", default)."""
        check_number(number)
        for end in range(len(number), 1, -1):
            rate = self.rates.get(number[:end])
            if rate is not None:
                return number[:end], rate
        if self.default is None:
            raise NoRoute(
                f"no rate matches destination {number!r} and the rate card has no default;"
                " add its prefix or a default to [rates]"
            )
        return DEFAULT, self.default

    def quote(self, number: str, text: str) -> Quote:
        """Prices `text` to `number`: segments x the rate of the longest matching prefix."""
        prefix, rate = self.rate_for(number)
        split = segment(text)
        return Quote(number, prefix, split.encoding, split.segments, rate, rate * split.segments)


def _rate(key: str, value: object, currency: str) -> Money:
    try:
        amount = to_decimal(value, f"rates.{key!r}")
    except InvalidMoney as exc:
        raise InvalidRateCard(str(exc)) from exc
    if amount < Decimal(0):
        raise InvalidRateCard(f"rates.{key!r} must be >= 0 (got {value!r}); a rate is a price")
    return Money(amount, currency)
