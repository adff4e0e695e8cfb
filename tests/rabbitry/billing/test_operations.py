"""The ledger's wire types: every operation round-trips, decimals travel as strings, old messages
decode; and the domain core stays pure (no trio, no aiormq)."""

import ast
import doctest
import importlib
from pathlib import Path

import msgspec
import pytest

import rabbitry.billing as sms
from rabbitry.billing import (
    Adjustment,
    Balance,
    BonusGrant,
    Capture,
    Hold,
    Money,
    OpenAccount,
    Operation,
    Receipt,
    Refund,
    Release,
    TopUp,
    decode_operation,
    encode_operation,
)

SMS = Path(__file__).resolve().parents[3] / "rabbitry" / "billing"
EUR = Money.of("1.5", "EUR")
OPERATIONS: list[Operation] = [
    OpenAccount(id="1", account="a", currency="EUR"),
    TopUp(id="2", account="a", amount=EUR, reference="wire 77"),
    BonusGrant(id="3", account="a", amount=EUR),
    Hold(id="4", account="a", hold="batch", amount=EUR),
    Capture(id="5", account="a", hold="batch", amount=EUR, message="m1", prefix="+33", segments=2),
    Release(id="6", account="a", hold="batch"),
    Release(id="7", account="a", hold="batch", amount=EUR),
    Refund(id="8", account="a", hold="batch", amount=EUR, reason="undelivered"),
    Adjustment(id="9", account="a", amount=-EUR, reason="chargeback"),
]


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda operation: type(operation).__name__)
def test_operations_round_trip(operation: Operation) -> None:
    wire = encode_operation(operation)
    assert decode_operation(wire) == operation
    assert encode_operation(decode_operation(wire)) == wire


def test_amounts_are_decimal_strings_and_the_kind_is_the_tag() -> None:
    wire = msgspec.json.decode(encode_operation(OPERATIONS[1]))
    assert wire == {
        "kind": "top_up",
        "id": "2",
        "account": "a",
        "amount": {"amount": "1.50", "currency": "EUR"},
        "reference": "wire 77",
    }


def test_an_older_message_without_the_defaulted_fields_decodes() -> None:
    old = (
        b'{"kind":"capture","id":"5","account":"a","hold":"h",'
        b'"amount":{"amount":"1","currency":"EUR"}}'
    )
    expected = Capture(id="5", account="a", hold="h", amount=Money.of(1, "EUR"))
    assert decode_operation(old) == expected


def test_a_json_number_is_read_from_its_text_never_through_a_float() -> None:
    assert msgspec.json.decode(b'{"amount":0.3,"currency":"EUR"}', type=Money) == Money.of(
        "0.3", "EUR"
    )
    # 0.1 + 0.2 as a float prints as 0.30000000000000004: kept exact, so refused (> 6 decimals).
    with pytest.raises(msgspec.ValidationError, match=r"more than 6 decimals.*0\.3000000000000000"):
        msgspec.json.decode(b'{"amount":0.30000000000000004,"currency":"EUR"}', type=Money)
    with pytest.raises(msgspec.ValidationError, match="ISO 4217"):
        msgspec.json.decode(b'{"amount":"1","currency":"eur"}', type=Money)
    with pytest.raises(msgspec.ValidationError, match="amount"):
        decode_operation(b'{"kind":"top_up","id":"1","account":"a","amount":{"currency":"EUR"}}')


def test_receipts_encode_decimals_as_strings() -> None:
    balance = Balance("a", "EUR", Money.of(2, "EUR").amount, Money.of(0, "EUR").amount, EUR.amount)
    receipt = Receipt("4", "hold", EUR.amount, Money.of(0, "EUR").amount, balance, seq=3)
    wire = msgspec.json.decode(msgspec.json.encode(receipt))
    assert wire["balance"] == {
        "account": "a", "currency": "EUR", "balance": "2.00", "bonus": "0.00", "held": "1.50",
    }  # fmt: skip
    assert (wire["bonus_part"], wire["paid_part"], wire["seq"]) == ("1.50", "0.00", 3)


@pytest.mark.parametrize("module", ["_encoding", "_money", "_pricing", "_operations", "_account"])
def test_the_domain_core_is_pure(module: str) -> None:
    tree = ast.parse((SMS / f"{module}.py").read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported & {"trio", "anyio", "aiormq", "sqlite3", "broker"} == set()


@pytest.mark.parametrize("module", ["_encoding", "_money", "_pricing"])
def test_the_docstring_examples_hold(module: str) -> None:
    results = doctest.testmod(importlib.import_module(f"rabbitry.billing.{module}"))
    assert results.attempted > 0
    assert results.failed == 0


def test_the_package_only_reexports_a_sorted_all() -> None:
    tree = ast.parse((SMS / "__init__.py").read_text())
    for node in tree.body:
        is_docstring = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        assert is_docstring or isinstance(node, ast.ImportFrom | ast.Assign), node.lineno
    exported = list(sms.__all__)
    assert exported == sorted(exported)
    assert [name for name in exported if not hasattr(sms, name)] == []
    modules = [path for path in SMS.glob("_*.py") if path.name != "__init__.py"]
    lengths = {path.name: len(path.read_text().splitlines()) for path in modules}
    assert {name: n for name, n in lengths.items() if not 100 <= n <= 400} == {}
