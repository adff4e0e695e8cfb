"""Properties: money survives loading to the last digit, and no unknown key slips through."""

import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conf import ConfigError
from rabbitry.config import config_json, loads_config

decimal_strings = (
    st.integers(min_value=0, max_value=10)
    .flatmap(
        lambda places: st.decimals(
            min_value=0, max_value=10**6, places=places, allow_nan=False, allow_infinity=False
        )
    )
    .map(lambda value: format(value, "f"))
)
prefixes = st.from_regex(r"\+[0-9]{1,6}", fullmatch=True)


@given(rate=decimal_strings, prefix=prefixes)
def test_a_decimal_string_round_trips_exactly(rate: str, prefix: str) -> None:
    config = loads_config(f'[rates]\ndefault = "{rate}"\n"{prefix}" = "{rate}"', environ={})
    assert config.rates == {"default": Decimal(rate), prefix: Decimal(rate)}
    assert format(config.rates[prefix], "f") == rate
    assert json.loads(config_json(config))["rates"] == {"default": rate, prefix: rate}


@given(value=st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False))
def test_a_float_rate_is_always_refused_with_the_advice_to_quote_it(value: float) -> None:
    with pytest.raises(ConfigError) as error:
        loads_config(f'[rates]\n"+33" = {value!r}', environ={})
    assert str(error.value) == (
        f'rates."+33" must be a decimal string like "0.0450" (got the float {value!r}: quote it)'
    )


CARRIER = '[[carriers]]\nname = "sim"\nplugin = "simulator"\nprefixes = ["+"]\n'
POOL = '[[pools]]\nname = "p"\nactor = "a.b:C"\n'
# Where an unknown key can go: the TOML that opens the table, and the key path it reports.
TABLES = {
    "": ("", ""),
    "broker": ("[broker]\n", "broker."),
    "store": ("[store]\n", "store."),
    "http": ("[http]\n", "http."),
    "logging": ("[logging]\n", "logging."),
    "retry": ("[retry]\n", "retry."),
    "tax": ("[tax]\n", "tax."),
    "carrier": (CARRIER, "carriers[0]."),
    "second carrier": (CARRIER.replace("sim", "sim2") + CARRIER, "carriers[1]."),
    "pool": (POOL, "pools[0]."),
}
KNOWN = {
    "currency", "broker", "store", "http", "rates", "carriers", "pools", "logging", "retry", "tax",
    "url", "bind", "admin_key", "format", "level", "delays", "max_attempts", "rate",
    "name", "plugin", "prefixes", "tps", "options", "actor", "size", "queue", "routing_keys",
    "prefetch", "kind", "restart", "intensity", "period", "backoff", "give_up_after",
}  # fmt: skip
unknown_keys = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True).filter(
    lambda key: key not in KNOWN
)


@given(table=st.sampled_from(sorted(TABLES)), key=unknown_keys)
def test_an_unknown_key_is_always_refused_with_its_path(table: str, key: str) -> None:
    opening, path = TABLES[table]
    with pytest.raises(ConfigError) as error:
        loads_config(f"{opening}{key} = 1\n", environ={})
    assert error.value.key == f"{path}{key}"
    assert str(error.value).startswith(f"unknown key {path}{key} (")


@given(key=unknown_keys)
def test_an_unknown_backoff_key_is_refused_with_its_path(key: str) -> None:
    with pytest.raises(ConfigError) as error:
        loads_config(f"{POOL}backoff = {{ {key} = 1 }}\n", environ={})
    assert error.value.key == f"pools[0].backoff.{key}"


@given(size=st.integers(min_value=-(2**31), max_value=0))
def test_any_pool_size_below_one_is_refused(size: int) -> None:
    with pytest.raises(ConfigError) as error:
        loads_config(f"{POOL}size = {size}", environ={})
    assert str(error.value) == f"pools[0].size must be >= 1 (got {size})"


@given(
    port=st.integers(min_value=0, max_value=65535),
    host=st.sampled_from(["localhost", "0.0.0.0", "[::]", "rabbitry-1.internal"]),
)
def test_any_host_and_port_bind(port: int, host: str) -> None:
    http = loads_config(f'[http]\nbind = "{host}:{port}"', environ={}).http
    assert (http.port, f"[{http.host}]" if ":" in http.host else http.host) == (port, host)
