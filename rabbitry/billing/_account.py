"""The account: its money as a pure state machine, `apply(state, operation) -> (state, receipt)`.

    state, receipt = apply(None, OpenAccount(id="o1", account="42", currency="EUR"))
    state, receipt = apply(state, TopUp(id="t1", account="42", amount=Money.of("10", "EUR")))
    state, receipt = apply(state, BonusGrant(id="b1", account="42", amount=Money.of("2", "EUR")))
    hold = Hold(id="h1", account="42", hold="m1", amount=Money.of("3", "EUR"))
    state, receipt = apply(state, hold)
    receipt.bonus_part, receipt.paid_part      # (Decimal('2.00'), Decimal('1.00')): bonus first

An account has two buckets, `paid` and `bonus`, plus its holds. The rules:

- Bonus is spent first: a hold reserves from bonus, then from paid; a capture charges the hold's
  bonus part first, then its paid part.
- Giving back goes the other way, so the result is as if less had been spent: a release hands back
  the hold's paid part first (the bonus stays held for the captures still to come), a refund
  returns the captured paid part first. Hold 10 (4 bonus, 6 paid), release 3, capture 7 ends
  exactly like hold 7, capture 7: 4 bonus and 3 paid spent.
- Nothing goes below zero: a hold beyond bonus + paid raises `InsufficientFunds`; a capture or a
  release beyond what the hold still holds, or a refund beyond what it captured, raises
  `InvalidOperation`. A refused operation changes nothing (the caller keeps the old state).

`state.holds` need only contain the hold the operation names (a store loads just that one);
`state.held` is the total still held across all holds. This module is pure: no trio, no I/O; the
apply-once rule for operation ids lives in `Ledger`, which stores the receipts.
"""

from collections.abc import Mapping
from decimal import Decimal

import attrs

from rabbitry.billing._errors import (
    InsufficientFunds,
    InvalidOperation,
    currency_mismatch_error,
    unknown_account_error,
    unknown_hold_error,
)
from rabbitry.billing._money import Money, canonical, check_currency
from rabbitry.billing._operations import (
    Adjustment,
    Balance,
    BonusGrant,
    Capture,
    Hold,
    OpenAccount,
    Operation,
    Receipt,
    Refund,
    Release,
    TopUp,
    kind_of,
)

ZERO = Decimal(0)


@attrs.frozen
class HeldFunds:
    """One hold: what it still holds from each bucket, and what it captured from each."""

    bonus: Decimal = ZERO
    paid: Decimal = ZERO
    captured_bonus: Decimal = ZERO
    captured_paid: Decimal = ZERO

    @property
    def remaining(self) -> Decimal:
        return self.bonus + self.paid

    @property
    def captured(self) -> Decimal:
        return self.captured_bonus + self.captured_paid


@attrs.frozen
class AccountState:
    """The money of one account (see the module docstring for what `holds` must contain)."""

    account: str
    currency: str
    paid: Decimal = ZERO
    bonus: Decimal = ZERO
    held: Decimal = ZERO
    holds: Mapping[str, HeldFunds] = attrs.field(factory=dict)

    def balance(self) -> Balance:
        def money(amount: Decimal) -> Decimal:
            return canonical(amount, self.currency)

        return Balance(
            self.account, self.currency, money(self.paid), money(self.bonus), money(self.held)
        )


def apply(state: AccountState | None, operation: Operation) -> tuple[AccountState, Receipt]:
    """The account after `operation`, and its receipt; raises (changing nothing) if refused."""
    if isinstance(operation, OpenAccount):
        return _open(state, operation)
    if state is None:
        raise unknown_account_error(operation.account)
    if operation.account != state.account:
        raise InvalidOperation(
            f"operation {operation.id!r} is for account {operation.account!r}, not"
            f" {state.account!r}; apply it to its own account"
        )
    if operation.amount is not None and operation.amount.currency != state.currency:
        raise currency_mismatch_error(state.account, state.currency, operation.amount.currency)
    match operation:
        case TopUp():
            amount = _positive(operation.amount, operation)
            state = attrs.evolve(state, paid=state.paid + amount)
            return state, _receipt(state, operation, ZERO, amount)
        case BonusGrant():
            amount = _positive(operation.amount, operation)
            state = attrs.evolve(state, bonus=state.bonus + amount)
            return state, _receipt(state, operation, amount, ZERO)
        case Hold():
            return _hold(state, operation)
        case Capture():
            return _capture(state, operation)
        case Release():
            return _release(state, operation)
        case Refund():
            return _refund(state, operation)
        case Adjustment():
            return _adjust(state, operation)
    raise AssertionError(f"unhandled operation {operation!r}")  # pragma: no cover


def _open(state: AccountState | None, operation: OpenAccount) -> tuple[AccountState, Receipt]:
    currency = check_currency(operation.currency)
    if state is None:
        state = AccountState(operation.account, currency)
    elif state.currency != currency:
        raise InvalidOperation(
            f"account {state.account!r} is already open in {state.currency}, so it cannot open"
            f" in {currency!r}; an account keeps its currency"
        )
    return state, _receipt(state, operation, ZERO, ZERO)


def _hold(state: AccountState, operation: Hold) -> tuple[AccountState, Receipt]:
    amount = _positive(operation.amount, operation)
    if operation.hold in state.holds:
        raise InvalidOperation(
            f"account {state.account!r} already has hold {operation.hold!r}"
            f" (operation {operation.id!r}); name each message or batch hold once"
        )
    available = state.bonus + state.paid
    if amount > available:
        raise InsufficientFunds(
            state.account,
            canonical(amount, state.currency),
            canonical(available, state.currency),
            state.currency,
        )
    from_bonus = min(state.bonus, amount)
    from_paid = amount - from_bonus
    held = HeldFunds(bonus=from_bonus, paid=from_paid)
    state = attrs.evolve(
        state,
        bonus=state.bonus - from_bonus,
        paid=state.paid - from_paid,
        held=state.held + amount,
        holds={**state.holds, operation.hold: held},
    )
    return state, _receipt(state, operation, from_bonus, from_paid)


def _capture(state: AccountState, operation: Capture) -> tuple[AccountState, Receipt]:
    amount = _positive(operation.amount, operation)
    held = _held(state, operation.hold)
    _within(amount, held.remaining, state, operation, "still holds")
    from_bonus = min(held.bonus, amount)
    from_paid = amount - from_bonus
    held = attrs.evolve(
        held,
        bonus=held.bonus - from_bonus,
        paid=held.paid - from_paid,
        captured_bonus=held.captured_bonus + from_bonus,
        captured_paid=held.captured_paid + from_paid,
    )
    state = attrs.evolve(
        state, held=state.held - amount, holds={**state.holds, operation.hold: held}
    )
    return state, _receipt(state, operation, from_bonus, from_paid)


def _release(state: AccountState, operation: Release) -> tuple[AccountState, Receipt]:
    held = _held(state, operation.hold)
    if operation.amount is None:
        amount = held.remaining
    else:
        amount = _positive(operation.amount, operation)
        _within(amount, held.remaining, state, operation, "still holds")
    to_paid = min(held.paid, amount)
    to_bonus = amount - to_paid
    held = attrs.evolve(held, bonus=held.bonus - to_bonus, paid=held.paid - to_paid)
    state = attrs.evolve(
        state,
        bonus=state.bonus + to_bonus,
        paid=state.paid + to_paid,
        held=state.held - amount,
        holds={**state.holds, operation.hold: held},
    )
    return state, _receipt(state, operation, to_bonus, to_paid)


def _refund(state: AccountState, operation: Refund) -> tuple[AccountState, Receipt]:
    amount = _positive(operation.amount, operation)
    held = _held(state, operation.hold)
    _within(amount, held.captured, state, operation, "captured")
    to_paid = min(held.captured_paid, amount)
    to_bonus = amount - to_paid
    held = attrs.evolve(
        held,
        captured_bonus=held.captured_bonus - to_bonus,
        captured_paid=held.captured_paid - to_paid,
    )
    state = attrs.evolve(
        state,
        bonus=state.bonus + to_bonus,
        paid=state.paid + to_paid,
        holds={**state.holds, operation.hold: held},
    )
    return state, _receipt(state, operation, to_bonus, to_paid)


def _adjust(state: AccountState, operation: Adjustment) -> tuple[AccountState, Receipt]:
    amount = operation.amount.amount
    if amount == 0:
        raise InvalidOperation(
            f"adjustment {operation.id!r} of account {state.account!r} is zero;"
            " adjust by a non-zero amount"
        )
    if state.paid + amount < 0:
        raise InsufficientFunds(
            state.account,
            canonical(-amount, state.currency),
            canonical(state.paid, state.currency),
            state.currency,
        )
    state = attrs.evolve(state, paid=state.paid + amount)
    return state, _receipt(state, operation, ZERO, amount)


def _positive(money: Money, operation: Operation) -> Decimal:
    if money.amount <= 0:
        raise InvalidOperation(
            f"{kind_of(operation)} {operation.id!r} of account {operation.account!r} must move a"
            f" positive amount (got {money}); send an amount above zero"
        )
    return money.amount


def _held(state: AccountState, hold: str) -> HeldFunds:
    held = state.holds.get(hold)
    if held is None:
        raise unknown_hold_error(state.account, hold)
    return held


def _within(
    amount: Decimal, limit: Decimal, state: AccountState, operation: Operation, what: str
) -> None:
    if amount > limit:
        hold = getattr(operation, "hold", "")
        raise InvalidOperation(
            f"{kind_of(operation)} {operation.id!r} asks {canonical(amount, state.currency)}"
            f" {state.currency} of hold {hold!r} of account {state.account!r}, which {what}"
            f" only {canonical(limit, state.currency)} {state.currency}; ask at most that"
        )


def _receipt(
    state: AccountState, operation: Operation, bonus_part: Decimal, paid_part: Decimal
) -> Receipt:
    return Receipt(
        operation.id,
        kind_of(operation),
        canonical(bonus_part, state.currency),
        canonical(paid_part, state.currency),
        state.balance(),
    )
