"""Secrets stay masked in reprs and strs; only `.reveal()` shows them."""

import pickle

import pytest

from conf import Secret, SecretURL, is_secret_name, mask_url, mask_urls_in


def test_a_secret_shows_only_stars() -> None:
    key = Secret("hunter2-hunter2")
    assert (repr(key), str(key), f"{key}", key.masked) == ("Secret('***')", "***", "***", "***")
    assert key.reveal() == "hunter2-hunter2"


def test_a_secret_url_shows_its_host_but_not_its_user_or_password() -> None:
    url = SecretURL("amqp://app:hunter2@rabbit:5672/prod")
    assert str(url) == "amqp://***@rabbit:5672/prod"
    assert repr(url) == "SecretURL('amqp://***@rabbit:5672/prod')"
    assert url.reveal() == "amqp://app:hunter2@rabbit:5672/prod"


def test_secrets_compare_by_value_and_kind() -> None:
    assert Secret("a") == Secret("a")
    assert Secret("a") != Secret("b")
    assert Secret("a") != SecretURL("a")
    assert Secret("a") != "a"
    assert hash(Secret("a")) == hash(Secret("a"))


def test_a_secret_survives_pickling_and_refuses_non_strings() -> None:
    assert pickle.loads(pickle.dumps(Secret("x"))) == Secret("x")
    with pytest.raises(TypeError, match=r"^a secret must be a string \(got a int\)$"):
        Secret(5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("amqp://guest:guest@127.0.0.1:5672/", "amqp://***@127.0.0.1:5672/"),
        ("postgresql://app@db/test", "postgresql://***@db/test"),
        ("memory://", "memory://"),
        ("sqlite:///./var/rabbitry.db", "sqlite:///./var/rabbitry.db"),
        ("user:pw@host", "***@host"),
        (
            "postgresql://app@db/ledger?sslmode=require&password=pg-pass&sslpassword=k",
            "postgresql://***@db/ledger?sslmode=require&password=***&sslpassword=***",
        ),
        ("amqps://mq/?auth_token=t0k&heartbeat=30", "amqps://mq/?auth_token=***&heartbeat=30"),
        (
            "https://api.test/sms?PASS=1&Api-Key=2&key=",
            "https://api.test/sms?PASS=***&Api-Key=***&key=",
        ),
        (
            "https://api.test/cb#access_token=t&state=s",
            "https://api.test/cb#access_token=***&state=s",
        ),
        (
            "https://api.test/sms?region=eu&secret%5Fid=x",
            "https://api.test/sms?region=eu&secret%5Fid=***",
        ),
        (
            "sqlite:///./var/rabbitry.db?synchronous=FULL",
            "sqlite:///./var/rabbitry.db?synchronous=FULL",
        ),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


@pytest.mark.parametrize(
    "name",
    [
        "password", "sslpassword", "passwd", "pass", "PWD", "secret", "client_secret",
        "X-Api-Secret", "token", "auth_token", "key", "api_key", "apiKey", "X-API-KEY",
        "Authorization", "X-Signature", "credentials", "passphrase", "auth",
    ],
)  # fmt: skip
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["region", "url", "host", "kind", "header", "user", "schema"])
def test_names_that_are_not_secret(name: str) -> None:
    assert not is_secret_name(name)


def test_urls_in_free_text_lose_their_passwords_and_secret_parameters() -> None:
    line = (
        "POST https://api.test/sms?api_key=k3y&to=%2B33 failed; store"
        " 'postgresql://app:pw@db/x?sslpassword=s1' and amqp://guest@mq/ ok"
    )
    assert mask_urls_in(line) == (
        "POST https://api.test/sms?api_key=***&to=%2B33 failed; store"
        " 'postgresql://***@db/x?sslpassword=***' and amqp://guest@mq/ ok"
    )
