"""Money: exact Decimal amounts with a currency, never float, one currency per operation."""

from decimal import Decimal

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rabbitry.billing import CurrencyMismatch, InvalidCurrency, InvalidMoney, Money, minor_unit

amounts = st.integers(-(10**12), 10**12).map(lambda n: Decimal(n).scaleb(-6))
currencies = st.sampled_from(["EUR", "USD", "JPY", "KWD"])


@given(amounts, amounts, amounts, currencies)
def test_addition_is_exact_associative_and_commutative(
    a: Decimal, b: Decimal, c: Decimal, currency: str
) -> None:
    x, y, z = (Money(value, currency) for value in (a, b, c))
    assert (x + y).amount == a + b
    assert x + y == y + x
    assert (x + y) + z == x + (y + z)
    assert (x + y) - y == x
    assert -x + x == Money.zero(currency)
    assert (-x).amount == -a


@given(amounts, st.integers(0, 10_000), currencies)
def test_times_a_count_is_repeated_addition(amount: Decimal, count: int, currency: str) -> None:
    total = Money.zero(currency)
    for _ in range(count % 50):
        total = total + Money(amount, currency)
    assert Money(amount, currency) * (count % 50) == total
    assert (Money(amount, currency) * count).amount == amount * count


@given(amounts, currencies)
def test_equal_amounts_encode_to_equal_decimal_strings(amount: Decimal, currency: str) -> None:
    money = Money(amount, currency)
    padded = Money(Decimal(f"{amount:f}0"), currency)  # a trailing zero more
    assert msgspec.json.encode(money) == msgspec.json.encode(padded)
    wire = msgspec.json.encode(money)
    assert msgspec.json.decode(wire)["amount"] == str(money.amount)
    assert msgspec.json.decode(wire, type=Money) == money
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(money), type=Money) == money


@given(amounts, currencies)
def test_rounding_is_half_up_to_the_minor_unit(amount: Decimal, currency: str) -> None:
    rounded = Money(amount, currency).rounded().amount
    step = Decimal(1).scaleb(-minor_unit(currency))
    assert rounded % step == 0
    assert abs(rounded - amount) <= step / 2
    if abs(rounded - amount) == step / 2:  # a tie goes away from zero
        assert abs(rounded) > abs(amount)


@pytest.mark.parametrize(
    ("amount", "currency", "rounded"),
    [
        ("0.125", "EUR", "0.13"),
        ("0.135", "EUR", "0.14"),
        ("-0.125", "EUR", "-0.13"),
        ("0.124999", "EUR", "0.12"),
        ("2.5", "JPY", "3"),
        ("1.0005", "KWD", "1.001"),
    ],
)
def test_rounding_examples(amount: str, currency: str, rounded: str) -> None:
    assert str(Money.of(amount, currency).rounded().amount) == rounded


def test_scaling_by_a_tax_rate_rounds_half_up() -> None:
    assert str(Money.of("0.50", "EUR").scaled("0.25").amount) == "0.13"  # 0.125: a tie
    assert str(Money.of("0.70", "EUR").scaled("0.25").amount) == "0.18"  # 0.175
    assert str(Money.of("-0.50", "EUR").scaled("0.25").amount) == "-0.13"
    with pytest.raises(InvalidMoney, match="a factor must not be a float"):
        Money.of("1", "EUR").scaled(0.21)


def test_the_invoice_example_of_the_domain_notes() -> None:
    # Per line: qty x unit rate, HALF_UP to the cent, then summed; VAT on the subtotal.
    lines = [
        Money.of("0.0075", "EUR") * 1200,
        Money.of("0.04", "EUR") * 310,
        Money.of("0.055", "EUR") * 42,
    ]
    assert [str(line.rounded().amount) for line in lines] == ["9.00", "12.40", "2.31"]
    subtotal = sum((line.rounded() for line in lines), Money.zero("EUR"))
    vat = subtotal.scaled("0.21")
    assert (str(subtotal.amount), str(vat.amount), str((subtotal + vat).amount)) == (
        "23.71",
        "4.98",
        "28.69",
    )


def test_canonical_form_keeps_the_minor_unit_and_drops_extra_zeros() -> None:
    assert str(Money.of("10", "EUR").amount) == "10.00"
    assert str(Money.of("0.0450", "EUR").amount) == "0.045"
    assert str(Money.of("7", "JPY").amount) == "7"
    assert str(Money.of("1", "KWD").amount) == "1.000"
    assert Money.of(" 1.5 ", "EUR") == Money.of(Decimal("1.50"), "EUR")


def test_a_float_is_refused_with_a_clear_error() -> None:
    with pytest.raises(InvalidMoney, match=r"must not be a float \(got 0\.1\).*'0\.1'"):
        Money.of(0.1, "EUR")
    with pytest.raises(InvalidMoney, match="must not be a float"):
        Money(0.1, "EUR")  # type: ignore[arg-type]
    with pytest.raises(InvalidMoney, match="a rate"):
        Money.of("1", "EUR") * 0.5


@pytest.mark.parametrize("value", ["abc", "NaN", "Infinity", "0.0000001", True, None, [1]])
def test_a_non_amount_is_refused(value: object) -> None:
    with pytest.raises(InvalidMoney, match=repr(value).replace("[", r"\[").replace("]", r"\]")):
        Money.of(value, "EUR")


@pytest.mark.parametrize("currency", ["eur", "EURO", "", 978, "E1R"])
def test_a_bad_currency_is_refused(currency: object) -> None:
    with pytest.raises(InvalidCurrency, match="ISO 4217"):
        Money.of("1", currency)  # type: ignore[arg-type]


@given(amounts, amounts)
def test_mixing_currencies_raises(a: Decimal, b: Decimal) -> None:
    eur, usd = Money(a, "EUR"), Money(b, "USD")
    with pytest.raises(CurrencyMismatch, match=r"EUR and .* USD: the currencies differ"):
        eur + usd
    with pytest.raises(CurrencyMismatch):
        eur - usd
    with pytest.raises(CurrencyMismatch):
        eur < usd  # noqa: B015 - the comparison is what raises
    assert eur != usd


def test_comparisons_within_one_currency() -> None:
    one, two = Money.of("1", "EUR"), Money.of("2.000", "EUR")
    assert one < two <= two
    assert two > one >= one
    assert Money.zero("EUR").is_zero
    assert not one.is_zero
