"""Pricing: the rate of the longest prefix, segments x rate, E.164 checks and no-route errors."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rabbitry.billing import (
    Encoding,
    InvalidNumber,
    InvalidRateCard,
    Money,
    NoRoute,
    RateCard,
    check_number,
    segment,
)

TABLE = {"default": "0.0500", "+33": "0.0450", "+336": "0.0400", "+3361": "0.0075"}
CARD = RateCard.from_table(TABLE, currency="EUR")


@pytest.mark.parametrize(
    ("number", "prefix", "rate"),
    [
        ("+33612345678", "+3361", "0.0075"),
        ("+33622345678", "+336", "0.04"),
        ("+33122345678", "+33", "0.045"),
        ("+34912345678", "default", "0.05"),
        ("+3312345678", "+33", "0.045"),
    ],
)
def test_the_longest_prefix_wins(number: str, prefix: str, rate: str) -> None:
    assert CARD.rate_for(number) == (prefix, Money.of(rate, "EUR"))


def test_price_is_segments_times_rate() -> None:
    quote = CARD.quote("+33122345678", "€" * 81)
    assert (quote.encoding, quote.segments) == (Encoding.GSM7, 2)
    assert quote.price == Money.of("0.09", "EUR")
    quote = CARD.quote("+33612345678", "ю" * 135)
    assert (quote.encoding, quote.segments, quote.price) == (
        Encoding.UCS2,
        3,
        Money.of("0.0225", "EUR"),
    )


@given(st.from_regex(r"\+[1-9][0-9]{7,14}", fullmatch=True), st.text(max_size=400))
def test_quote_agrees_with_a_brute_force_prefix_search(number: str, text: str) -> None:
    matches = [key for key in TABLE if key != "default" and number.startswith(key)]
    key = max(matches, key=len) if matches else "default"
    quote = CARD.quote(number, text)
    assert quote.prefix == key
    assert quote.price.amount == Decimal(TABLE[key]) * segment(text).segments
    assert quote.price.currency == "EUR"


def test_no_route_without_a_default() -> None:
    card = RateCard.from_table({"+33": "0.045"}, currency="EUR")
    with pytest.raises(NoRoute, match=r"destination '\+4915112345678'.*no default"):
        card.quote("+4915112345678", "hi")
    assert isinstance(NoRoute("x"), LookupError)


@pytest.mark.parametrize(
    "number",
    [
        *("33612345678", "+3361234", "+3361234567890123", "+33 612345678", "", "+33612a45678"),
        *("+00000000000", "+0612345678"),
    ],
)
def test_a_destination_that_is_not_e164_is_named(number: str) -> None:
    with pytest.raises(InvalidNumber, match=f"destination {number!r}".replace("+", r"\+")):
        CARD.quote(number, "hi")


def test_e164_bounds() -> None:
    assert check_number("+12345678") == "+12345678"
    assert check_number("+123456789012345") == "+123456789012345"
    with pytest.raises(InvalidNumber):
        check_number(33612345678)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"33": "0.04"}, r"rates\.'33' is neither 'default' nor an E\.164 prefix"),
        ({"+33": 0.04}, r"rates\.'\+33' must not be a float"),
        ({"+33": "abc"}, r"rates\.'\+33' must be a decimal number"),
        ({"default": "0.0000001"}, r"rates\.'default' has more than 6 decimals"),
        ({"+33": "-0.01"}, r"rates\.'\+33' must be >= 0"),
    ],
)
def test_a_bad_rate_card_names_the_key(table: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidRateCard, match=message):
        RateCard.from_table(table, currency="EUR")


def test_rates_keep_six_decimals() -> None:
    card = RateCard.from_table({"default": "0.000125"}, currency="USD")
    assert card.quote("+12025550123", "a" * 161).price == Money.of("0.00025", "USD")
