"""The pure account rules: bonus first, give back paid first, never below zero."""

from decimal import Decimal

import pytest

from rabbitry.billing import (
    AccountState,
    Adjustment,
    BonusGrant,
    Capture,
    CurrencyMismatch,
    Hold,
    InsufficientFunds,
    InvalidOperation,
    Money,
    OpenAccount,
    Operation,
    Refund,
    Release,
    TopUp,
    UnknownAccount,
    UnknownHold,
    apply,
)


def eur(amount: str) -> Money:
    return Money.of(amount, "EUR")


def run(*operations: Operation) -> AccountState:
    state = None
    for operation in operations:
        state, _ = apply(state, operation)
    assert state is not None
    return state


FUNDED = (
    OpenAccount(id="o", account="42", currency="EUR"),
    TopUp(id="t", account="42", amount=eur("6")),
    BonusGrant(id="b", account="42", amount=eur("4")),
)


def test_a_hold_draws_from_bonus_first() -> None:
    state, receipt = apply(run(*FUNDED), Hold(id="h", account="42", hold="m", amount=eur("5")))
    assert (receipt.bonus_part, receipt.paid_part) == (Decimal("4.00"), Decimal("1.00"))
    assert (state.bonus, state.paid, state.held) == (0, 5, 5)
    balance = receipt.balance
    assert (balance.balance, balance.bonus, balance.held) == (
        Decimal("5.00"),
        Decimal("0.00"),
        Decimal("5.00"),
    )


def test_release_then_capture_spends_as_if_the_hold_was_smaller() -> None:
    state = run(
        *FUNDED,
        Hold(id="h", account="42", hold="m", amount=eur("10")),
        Release(id="r", account="42", hold="m", amount=eur("3")),
    )
    assert (state.bonus, state.paid) == (0, 3)  # paid came back, the bonus stays held
    state, receipt = apply(state, Capture(id="c", account="42", hold="m", amount=eur("7")))
    assert (receipt.bonus_part, receipt.paid_part) == (4, 3)
    assert (state.bonus, state.paid, state.held) == (0, 3, 0)


def test_partial_captures_then_release_the_rest() -> None:
    state = run(
        *FUNDED,
        Hold(id="h", account="42", hold="batch", amount=eur("9")),
        Capture(id="c1", account="42", hold="batch", amount=eur("3")),
        Capture(id="c2", account="42", hold="batch", amount=eur("3")),
    )
    state, receipt = apply(state, Release(id="r", account="42", hold="batch"))
    # The hold took 4 bonus + 5 paid; the captures spent 4 bonus + 2 paid; 3 paid come back.
    assert (receipt.bonus_part, receipt.paid_part) == (0, 3)
    assert (state.bonus, state.paid, state.held) == (0, 4, 0)
    assert state.holds["batch"].captured_bonus == 4
    assert state.holds["batch"].captured_paid == 2


def test_a_refund_returns_paid_first_and_undoes_the_capture() -> None:
    state = run(
        *FUNDED,
        Hold(id="h", account="42", hold="m", amount=eur("7")),
        Capture(id="c", account="42", hold="m", amount=eur("7")),
    )
    assert (state.bonus, state.paid) == (0, 3)
    state, receipt = apply(state, Refund(id="f", account="42", hold="m", amount=eur("4")))
    assert (receipt.bonus_part, receipt.paid_part) == (1, 3)
    assert (state.bonus, state.paid) == (1, 6)
    with pytest.raises(InvalidOperation, match=r"hold 'm' of account '42', which captured only"):
        apply(state, Refund(id="f2", account="42", hold="m", amount=eur("3.01")))


def test_a_hold_beyond_the_available_funds_names_account_amount_and_available() -> None:
    state = run(*FUNDED)
    message = r"account '42' has 10\.00 EUR available, less than the 10\.01 EUR asked"
    with pytest.raises(InsufficientFunds, match=message) as caught:
        apply(state, Hold(id="h", account="42", hold="m", amount=eur("10.01")))
    assert (caught.value.account, caught.value.amount, caught.value.available) == (
        "42",
        Decimal("10.01"),
        Decimal("10.00"),
    )
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("operation", "error", "message"),
    [
        (Capture(id="c", account="42", hold="x", amount=eur("1")), UnknownHold, "no hold 'x'"),
        (Release(id="r", account="42", hold="x"), UnknownHold, "no hold 'x'"),
        (TopUp(id="t2", account="42", amount=eur("0")), InvalidOperation, "positive amount"),
        (TopUp(id="t2", account="42", amount=eur("-1")), InvalidOperation, "positive amount"),
        (TopUp(id="t2", account="42", amount=Money.of("1", "USD")), CurrencyMismatch, "in EUR"),
        (TopUp(id="t2", account="7", amount=eur("1")), InvalidOperation, "for account '7'"),
        (Adjustment(id="a", account="42", amount=eur("-6.01")), InsufficientFunds, "6.00 EUR"),
        (Adjustment(id="a", account="42", amount=eur("0")), InvalidOperation, "is zero"),
        (OpenAccount(id="o2", account="42", currency="USD"), InvalidOperation, "already open"),
        (Hold(id="h2", account="42", hold="m", amount=eur("1")), InvalidOperation, "already has"),
        (
            Capture(id="c", account="42", hold="m", amount=eur("1.01")),
            InvalidOperation,
            "still holds only 1.00 EUR",
        ),
    ],
)
def test_refusals(operation: Operation, error: type[Exception], message: str) -> None:
    state = run(*FUNDED, Hold(id="h", account="42", hold="m", amount=eur("1")))
    with pytest.raises(error, match=message.replace("(", r"\(").replace(".", r"\.")):
        apply(state, operation)


def test_money_on_an_account_never_opened() -> None:
    with pytest.raises(UnknownAccount, match="account '9' is not open"):
        apply(None, TopUp(id="t", account="9", amount=eur("1")))


def test_adjustments_move_the_paid_balance_both_ways() -> None:
    state = run(*FUNDED, Adjustment(id="a", account="42", amount=eur("-6"), reason="chargeback"))
    assert (state.paid, state.bonus) == (0, 4)
    state, receipt = apply(state, Adjustment(id="a2", account="42", amount=eur("2.5")))
    assert (state.paid, receipt.paid_part) == (Decimal("2.5"), Decimal("2.50"))
