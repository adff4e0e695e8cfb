"""Secrets stay masked in reprs, strs, error messages and JSON; only `.reveal()` shows them."""

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conf import ConfigError
from rabbitry.config import config_json, loads_config, summary

# Long enough that a match cannot be a coincidence with the rest of a message.
secrets = st.text(alphabet=string.ascii_letters + string.digits, min_size=12, max_size=30)


def _everything_with(secret: str, environ: dict[str, str]) -> str:
    config = loads_config(
        f"""
        [broker]
        url = "amqp://app:{secret}@rabbit:5672/"
        [store]
        url = "postgresql://ledger:{secret}@db:5432/test"
        [http]
        admin_key = "{secret}{secret}"
        [[carriers]]
        name = "smpp"
        plugin = "smpp"
        prefixes = ["+"]
        [carriers.options]
        password_env = "SMPP_PASSWORD"
        api_token = "{secret}"
        """,
        environ=environ,
    )
    return "\n".join((repr(config), str(config), summary(config), config_json(config).decode()))


# What a config shows anyway (pool actor paths, queue names...): Hypothesis also tries the
# code's own string constants, and a "secret" such as "ReportsActor" is shown for other reasons.
_SHOWN_ANYWAY = _everything_with("NotShownAnywhere0", {"SMPP_PASSWORD": "NotShownAnywhere0"})


@given(secret=secrets.filter(lambda secret: secret not in _SHOWN_ANYWAY))
def test_a_loaded_config_never_shows_a_secret(secret: str) -> None:
    shown = _everything_with(secret, {"SMPP_PASSWORD": secret})
    assert secret not in shown
    assert "***" in shown


def test_the_check_above_can_fail() -> None:
    # Guard against a vacuous property: an ordinary option is shown, so the check would see it.
    config = loads_config(
        '[[carriers]]\nname = "s"\nplugin = "p"\nprefixes = ["+"]\n'
        '[carriers.options]\nhost = "visible-host-name"',
        environ={},
    )
    assert "visible-host-name" in config_json(config).decode()


BAD_WITH_SECRET = [
    '[broker]\nurl = "http://app:{s}@rabbit/"',
    '[store]\nurl = "mysql://app:{s}@db/x"',
    '[http]\nadmin_key = "{s}"\nbind = "8080"',
    '[http]\nadmin_key = ["{s}"]',
    '[http]\nadmin_key = "{s}"\n[rates]\ndefault = 0.1',
    '[broker]\nurl = "amqp://app:{s}@rabbit/"\nuri = "x"',
]


@pytest.mark.parametrize("template", BAD_WITH_SECRET)
@given(secret=secrets)
def test_an_error_never_shows_a_secret(template: str, secret: str) -> None:
    with pytest.raises(ConfigError) as error:
        loads_config(template.format(s=secret), environ={})
    assert secret not in str(error.value)
    assert secret not in repr(error.value)


@given(secret=secrets)
def test_an_error_about_an_environment_value_never_shows_the_secret(secret: str) -> None:
    with pytest.raises(ConfigError) as error:
        loads_config("", environ={"RABBITRY_BROKER_URL": f"ftp://u:{secret}@host/"})
    assert str(error.value) == (
        "broker.url (from RABBITRY_BROKER_URL) must be an amqp://, amqps:// or memory:// URL "
        '(got "ftp://***@host/")'
    )


def test_a_secret_of_the_wrong_type_is_masked_too() -> None:
    with pytest.raises(ConfigError) as error:
        loads_config("[http]\nadmin_key = 123456789", environ={})
    assert str(error.value) == "http.admin_key must be a string (got ***)"
