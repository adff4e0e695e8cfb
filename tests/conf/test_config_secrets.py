"""Secrets stay masked in reprs and strs; only `.reveal()` shows them."""

import pickle

import pytest

from conf import Secret, SecretURL, mask_url


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
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked
