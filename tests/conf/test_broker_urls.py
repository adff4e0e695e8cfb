"""`[broker] url` as one URL or a list (the nodes of one RabbitMQ cluster), every URL a secret;
`[broker] give_up_after`, the reconnect budget (left out: never give up)."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from thumbnailer import LOADER

from conf import ConfigError, SecretURL, SecretURLs, config_json, mask_url, split_urls

CLUSTER = ["amqp://app:pw-one@rabbit1:5672/prod", "amqp://app:pw-two@rabbit2:5672/prod"]


def test_a_toml_list_of_urls_is_one_secret_whose_urls_are_each_masked() -> None:
    text = f"[broker]\nurl = {json.dumps(CLUSTER)}\n"
    url = LOADER.loads(text, environ={}).broker.url
    assert isinstance(url, SecretURLs)
    assert url.reveal() == ",".join(CLUSTER)
    assert str(url) == "amqp://***@rabbit1:5672/prod,amqp://***@rabbit2:5672/prod"
    assert repr(url) == "SecretURLs('amqp://***@rabbit1:5672/prod,amqp://***@rabbit2:5672/prod')"
    assert [one.reveal() for one in url.split()] == CLUSTER
    assert [str(one) for one in url.split()] == [
        "amqp://***@rabbit1:5672/prod",
        "amqp://***@rabbit2:5672/prod",
    ]
    shown = config_json(LOADER.loads(text, environ={})).decode()
    assert "pw-" not in shown
    assert json.loads(shown)["broker"]["url"] == str(url)


def test_the_environment_writes_the_list_comma_separated() -> None:
    settings = LOADER.loads("", environ={"THUMBS_BROKER_URL": " , ".join(CLUSTER)})
    assert [one.reveal() for one in settings.broker.url.split()] == CLUSTER


def test_one_url_reads_as_it_always_did() -> None:
    url = LOADER.loads('[broker]\nurl = "amqp://a:b@rabbit/"\n', environ={}).broker.url
    assert url == SecretURL("amqp://a:b@rabbit/")
    assert SecretURL("amqp://a:b@rabbit/") == url
    assert hash(url) == hash(SecretURL("amqp://a:b@rabbit/"))
    assert url.split() == (SecretURL("amqp://a:b@rabbit/"),)


@pytest.mark.parametrize(
    ("text", "environ", "key", "message"),
    [
        (
            '[broker]\nurl = ["amqp://a:b@rabbit1/", "memory://"]',
            {},
            "broker.url[1]",
            (
                "broker.url[1] must be an amqp:// or amqps:// URL, as every URL of a list names a "
                'node of one RabbitMQ cluster (got "memory://")'
            ),
        ),
        (
            "",
            {"THUMBS_BROKER_URL": "amqp://a:b@rabbit1/,http://app:s3cret@rabbit2/"},
            "broker.url[1]",
            (
                "broker.url[1] must be an amqp:// or amqps:// URL, as every URL of a list names a "
                'node of one RabbitMQ cluster (got "http://***@rabbit2/")'
            ),
        ),
        (
            '[broker]\nurl = ["amqp://a:b@rabbit1/", 5]',
            {},
            "broker.url",
            'broker.url must be a string or a list of strings (got ["amqp://***@rabbit1/", 5])',
        ),
        (
            "[broker]\ngive_up_after = 0",
            {},
            "broker.give_up_after",
            "broker.give_up_after must be > 0 (got 0)",
        ),
        (
            "[broker]\ngive_up_after = inf",
            {},
            "broker.give_up_after",
            "broker.give_up_after must be finite; leave it out to never give up (got inf)",
        ),
    ],
)
def test_a_bad_url_list_or_budget_is_one_sentence(
    text: str, environ: dict[str, str], key: str, message: str
) -> None:
    with pytest.raises(ConfigError) as error:
        LOADER.loads(text, environ=environ)
    assert (error.value.key, str(error.value)) == (key, message)
    assert "s3cret" not in str(error.value)


def test_the_budget_is_left_out_by_default_and_read_in_seconds() -> None:
    assert LOADER.loads("", environ={}).broker.give_up_after is None
    assert LOADER.loads("[broker]\ngive_up_after = 90", environ={}).broker.give_up_after == 90.0


def test_a_comma_inside_one_url_does_not_split_it() -> None:
    assert split_urls("amqp://u:p,w@a/") == ("amqp://u:p,w@a/",)
    assert split_urls("amqp://a/,amqps://b/") == ("amqp://a/", "amqps://b/")
    assert mask_url("amqp://u:p,w@a/") == "amqp://***@a/"


passwords = st.text(
    alphabet=st.characters(codec="ascii", exclude_characters="/?#@, \t\n\r\x0b\x0c"),
    min_size=4,
    max_size=12,
)


@given(secrets=st.lists(passwords, min_size=1, max_size=4))
def test_no_password_of_any_url_of_a_list_shows(secrets: list[str]) -> None:
    urls = [f"amqp://user:{secret}@rabbit{n}:5672/v" for n, secret in enumerate(secrets)]
    url = SecretURLs(",".join(urls))
    shown = [str(url), repr(url), mask_url(url.reveal()), *(str(one) for one in url.split())]
    for secret in secrets:
        for text in shown:
            assert f":{secret}@" not in text
    assert str(url) == ",".join(f"amqp://***@rabbit{n}:5672/v" for n in range(len(secrets)))
