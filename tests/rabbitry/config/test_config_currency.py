"""`currency`: the platform's one currency, a top-level key, "EUR" unless the file says so."""

import json

import pytest

from conf import ConfigError
from rabbitry.config import config_json, loads_config


def test_the_currency_is_eur_unless_the_file_says_otherwise() -> None:
    assert loads_config("", environ={}).currency == "EUR"
    assert loads_config('currency = "USD"', environ={}).currency == "USD"
    assert (
        json.loads(config_json(loads_config('currency = "JPY"', environ={})))["currency"] == "JPY"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'currency = "eur"',
            'currency must be three upper-case letters, an ISO 4217 code like "EUR" (got "eur")',
        ),
        (
            'currency = "EURO"',
            'currency must be three upper-case letters, an ISO 4217 code like "EUR" (got "EURO")',
        ),
        (
            'currency = ""',
            'currency must be three upper-case letters, an ISO 4217 code like "EUR" (got "")',
        ),
        ("currency = 978", "currency must be a string (got 978)"),
        ('[currency]\ncode = "EUR"', "currency must be a string (got a table)"),
        ('currenc = "EUR"', "unknown key currenc (did you mean currency?)"),
    ],
)
def test_a_bad_currency_is_named(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        loads_config(text, environ={})
    assert str(error.value) == message
    assert error.value.key in ("currency", "currenc")
