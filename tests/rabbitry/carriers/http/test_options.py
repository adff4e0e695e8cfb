"""The HTTP connector's options: defaults, and one clear error per wrong value."""

import re
from typing import Any

import pytest

from conf import Secret
from rabbitry.carriers import Connector, ConnectorFactory, load_connector
from rabbitry.carriers.http import DEFAULT_REQUEST, HttpConnector, HttpOptions, find, parse_path

URL = "https://api.acme.example/v1/sms"


def parse(**options: Any) -> HttpOptions:
    return HttpOptions.parse("acme", {"url": URL, **options}, environ={"SET": "value"})


def test_it_is_a_connector_plugin_declared_as_http(install_plugin: Any) -> None:
    # What pyproject.toml declares: http = "rabbitry.carriers.http:HttpConnector".
    install_plugin("rabbitry_http", {"http": "rabbitry.carriers.http:HttpConnector"}, None)
    factory: ConnectorFactory = load_connector("http")
    assert factory is HttpConnector
    connector: Connector = factory("acme", {"url": URL})
    assert (connector.name, connector.health()) == ("acme", "down")


def test_defaults() -> None:
    options = parse()
    assert (options.method, options.format, options.timeout, options.auth) == (
        "POST",
        "json",
        10.0,
        None,
    )
    assert options.request.placeholders() == {"to", "from", "text", "message_id"}
    assert set(DEFAULT_REQUEST) == {"to", "from", "text", "client_ref"}
    assert options.webhook_secret is None
    with_callback = parse(callback_url="https://sms.example/dlr")
    assert "callback_url" in with_callback.request.placeholders()


def test_secrets_stay_secrets_and_out_of_repr() -> None:
    options = parse(
        auth={"kind": "basic", "user": "AC42", "password": "pa55word"},
        webhook_secret="hook-secret",
        headers={"X-Key": Secret("header-secret")},
    )
    assert options.webhook_secret == Secret("hook-secret")
    shown = repr(options)
    for secret in ("pa55word", "hook-secret", "header-secret"):
        assert secret not in shown


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"url": None}, "carriers.acme.options.url is required (a string)"),
        (
            {"url": "ftp://x"},
            "carriers.acme.options.url must be an http:// or https:// URL (got 'ftp://x')",
        ),
        (
            {"url": Secret("ftp://user:pw@x")},
            "carriers.acme.options.url must be an http:// or https:// URL (got '***')",
        ),
        ({"verb": "POST"}, "carriers.acme.options.verb is not an http option (known: auth, "),
        (
            {"method": "GET"},
            "carriers.acme.options.method must be one of 'POST', 'PUT', 'PATCH' (got 'GET')",
        ),
        (
            {"format": "xml"},
            "carriers.acme.options.format must be one of 'json', 'form' (got 'xml')",
        ),
        ({"timeout": 0}, "carriers.acme.options.timeout must be a number of seconds > 0 (got 0)"),
        (
            {"degraded_after": 0},
            "carriers.acme.options.degraded_after must be an integer >= 1 (got 0)",
        ),
        ({"request": "to={to}"}, "carriers.acme.options.request must be a table (got 'to={to}')"),
        (
            {"request": {"to": "{phone}"}},
            (
                "carriers.acme.options.request.to holds an unknown placeholder (known: "
                "{callback_url}, "
            ),
        ),
        (
            {"request": {"to": "{to!r}"}},
            "carriers.acme.options.request.to holds an unknown placeholder",
        ),
        ({"request": {"to": "{to"}}, "carriers.acme.options.request.to is not a valid template"),
        (
            {"request": {"a": {"b": ["{nope}"]}}},
            "carriers.acme.options.request.a.b[0] holds an unknown placeholder",
        ),
        (
            {"format": "form", "request": {"a": {"b": "{to}"}}},
            (
                "carriers.acme.options.request.a must be a string, number, boolean or list of them "
                "(a form body is flat)"
            ),
        ),
        (
            {"request": {"key_env": "UNSET"}},
            (
                "carriers.acme.options.request.key_env names the environment variable 'UNSET', "
                "which is not set"
            ),
        ),
        (
            {"auth": {"kind": "oauth"}},
            (
                "carriers.acme.options.auth.kind must be one of 'bearer', 'basic', 'header' (got "
                "'oauth')"
            ),
        ),
        (
            {"auth": {"kind": "bearer"}},
            "carriers.acme.options.auth.token is required: a non-empty string, or token_env naming",
        ),
        (
            {"auth": {"kind": "bearer", "token": "a", "token_env": "SET"}},
            (
                "carriers.acme.options.auth.token and carriers.acme.options.auth.token_env are "
                "both set; keep one"
            ),
        ),
        (
            {"auth": {"kind": "bearer", "token_env": "UNSET"}},
            (
                "carriers.acme.options.auth.token_env names the environment variable 'UNSET', "
                "which is not set"
            ),
        ),
        (
            {"auth": {"kind": "bearer", "user": "x", "token": "t"}},
            (
                "carriers.acme.options.auth.user is not a bearer auth option (known: kind, token, "
                "token_env)"
            ),
        ),
        (
            {"auth": {"kind": "basic", "password": "p"}},
            "carriers.acme.options.auth.user is required (a string)",
        ),
        (
            {"auth": {"kind": "header", "header": "X Key", "value": "v"}},
            "carriers.acme.options.auth.header must be a header name (got 'X Key')",
        ),
        (
            {"headers": {"X-Count": 3}},
            "carriers.acme.options.headers.X-Count must be a string (got 3)",
        ),
        ({"response": {"id": "x"}}, "carriers.acme.options.response.id is not a response option"),
        (
            {"response": {"id_path": "a..b"}},
            (
                "carriers.acme.options.response.id_path must be a dotted path of keys, list "
                "indexes and *, like 'messages.0.message-id' (got 'a..b')"
            ),
        ),
        (
            {"response": {"status_path": "status"}},
            (
                "carriers.acme.options.response.status_path and "
                "carriers.acme.options.response.ok_values go together: set both or neither"
            ),
        ),
        (
            {"response": {"ok_values": ["0"]}},
            (
                "carriers.acme.options.response.status_path and "
                "carriers.acme.options.response.ok_values go together: set both or neither (got "
                "status_path=None, ok_values=['0'])"
            ),
        ),
        (
            {"response": {"status_path": "s", "ok_values": "0"}},
            (
                "carriers.acme.options.response.ok_values must be a list of status values (strings "
                "or integers) (got '0')"
            ),
        ),
        (
            {"dlr": {"status_map": {"read": "seen"}}},
            (
                "carriers.acme.options.dlr.status_map.read must be one of 'delivered', "
                "'undelivered', 'failed', 'sent' (got 'seen')"
            ),
        ),
        (
            {"dlr": {"id_field": ""}},
            "carriers.acme.options.dlr.id_field must be a non-empty field name (got '')",
        ),
        (
            {"inbound": {"add_plus": "yes"}},
            "carriers.acme.options.inbound.add_plus must be true or false (got 'yes')",
        ),
        (
            {"webhook_secret_env": "UNSET"},
            (
                "carriers.acme.options.webhook_secret_env names the environment variable 'UNSET', "
                "which is not set"
            ),
        ),
        (
            {"webhook_secret": ""},
            "carriers.acme.options.webhook_secret is required: a non-empty string",
        ),
    ],
)
def test_a_wrong_option_is_named(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        parse(**options)


def test_the_connector_checks_its_options_when_made() -> None:
    with pytest.raises(ValueError, match=r"^carriers\.other\.options\.url is required"):
        HttpConnector("other", {}, environ={})


@pytest.mark.parametrize(
    ("path", "found"),
    [
        ("messages.0.message-id", ["a"]),
        ("messages.*.message-id", ["a", "b"]),
        ("messages.-1.status", ["1"]),
        ("ids", [1, 2]),
        ("messages.5.message-id", []),
        ("nothing.here", []),
        ("messages.*.missing", []),
    ],
)
def test_find_follows_dotted_paths(path: str, found: list[object]) -> None:
    answer = {
        "messages": [{"message-id": "a", "status": "0"}, {"message-id": "b", "status": "1"}],
        "ids": [1, 2],
    }
    assert find(answer, parse_path("id_path", path)) == found
