"""Loading: the shipped files, the defaults, the environment's overrides and carrier secrets."""

from decimal import Decimal
from pathlib import Path

import pytest

import conf
from conf import Backoff, ConfigError, Secret, SecretURL
from rabbitry.config import Config, load_config, loads_config

CONF = Path(conf.__file__).parent


def test_the_issue_example_config_loads_as_written() -> None:
    config = load_config(CONF / "rabbitry.toml", environ={})
    assert config.broker.url.reveal() == "amqp://guest:guest@127.0.0.1:5672/"
    assert config.store.url.reveal() == "sqlite:///./var/rabbitry.db"
    assert (config.http.bind, config.http.host, config.http.port) == (
        "127.0.0.1:8080",
        "127.0.0.1",
        8080,
    )
    assert config.http.admin_key is None  # it says how to make one; RABBITRY_ADMIN_KEY gives it
    assert (config.http.idempotency_ttl, config.http.read_timeout) == (86400.0, 10.0)
    assert config.http.max_connections == 1000
    assert config.rates == {"default": Decimal("0.0500"), "+33": Decimal("0.0450")}
    assert str(config.rates["default"]) == "0.0500"
    [carrier] = config.carriers
    assert (carrier.name, carrier.plugin, carrier.prefixes, carrier.tps) == (
        "sim",
        "simulator",
        ("+",),
        500,
    )
    assert carrier.options == {"reject_prefixes": ["+999"], "undeliverable_prefixes": ["+998"]}
    assert config.tax.rate == Decimal("0.20")
    assert config.retry.attempts == 6


def test_the_demo_config_uses_the_simulator_without_limits() -> None:
    config = load_config(CONF / "demo.toml", environ={})
    assert [(carrier.plugin, carrier.tps) for carrier in config.carriers] == [("simulator", None)]
    assert config.http.port == 0
    assert config.retry.delays == (0.2, 1.0, 5.0)


def test_an_empty_file_is_every_default() -> None:
    config = loads_config("", environ={})
    assert config == Config()
    assert config.broker.url == SecretURL("amqp://guest:guest@127.0.0.1:5672/")
    assert config.store.url == SecretURL("sqlite:///./var/rabbitry.db")
    assert (config.http.bind, config.http.admin_key) == ("127.0.0.1:8080", None)
    assert (config.carriers, config.pools, config.rates) == ((), (), {})
    assert (config.logging.format, config.logging.level) == ("logfmt", "info")
    assert config.retry.delays == (1.0, 5.0, 30.0, 120.0, 600.0)
    assert config.retry.max_attempts is None
    assert config.retry.attempts == 6
    assert config.tax.rate == Decimal(0)


def test_a_pool_takes_its_defaults_and_its_name_as_its_queue() -> None:
    config = loads_config('[[pools]]\nname = "refunds"\nactor = "app.refunds:Refunds"', environ={})
    [pool] = config.pools
    assert (pool.queue, pool.size, pool.prefetch, pool.kind) == ("refunds", 1, 10, "consumer")
    assert (pool.restart, pool.intensity, pool.period) == ("permanent", 3, 5.0)
    assert pool.backoff == Backoff(kind="none")
    assert pool.routing_keys == ()


def test_a_pool_keeps_everything_it_declares() -> None:
    text = """
    [[pools]]
    name = "billing"
    actor = "app.billing:Billing.Service"
    size = 4
    queue = "billing.rpc"
    routing_keys = ["billing.#", "invoices.*"]
    prefetch = 32
    kind = "rpc"
    restart = "transient"
    intensity = 10
    period = 30
    [pools.backoff]
    kind = "exponential"
    min = 0.5
    max = 20
    multiplier = 3
    jitter = 0
    reset_after = 120
    """
    [pool] = loads_config(text, environ={}).pools
    assert pool == conf.Pool(
        name="billing",
        actor="app.billing:Billing.Service",
        size=4,
        queue="billing.rpc",
        routing_keys=("billing.#", "invoices.*"),
        prefetch=32,
        kind="rpc",
        restart="transient",
        intensity=10,
        period=30.0,
        backoff=Backoff(
            kind="exponential", min=0.5, max=20.0, multiplier=3.0, jitter=0.0, reset_after=120.0
        ),
    )


def test_the_config_is_frozen() -> None:
    config = loads_config("", environ={})
    with pytest.raises(AttributeError):
        config.http.bind = "0.0.0.0:80"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("variable", "value", "read"),
    [
        ("RABBITRY_BROKER_URL", "memory://", lambda c: c.broker.url.reveal()),
        ("RABBITRY_STORE_URL", "postgresql://app:pw@db/test", lambda c: c.store.url.reveal()),
        ("RABBITRY_HTTP_BIND", "[::1]:9000", lambda c: c.http.bind),
        ("RABBITRY_ADMIN_KEY", "from-env-0123456789abcdef", lambda c: c.http.admin_key.reveal()),
        ("RABBITRY_LOG_FORMAT", "json", lambda c: c.logging.format),
        ("RABBITRY_LOG_LEVEL", "debug", lambda c: c.logging.level),
    ],
)
def test_the_environment_overrides_the_file(variable: str, value: str, read: object) -> None:
    config = load_config(CONF / "rabbitry.toml", environ={variable: value})
    assert read(config) == value  # type: ignore[operator]


def test_an_override_fills_a_table_the_file_leaves_out() -> None:
    config = loads_config("", environ={"RABBITRY_ADMIN_KEY": "k" * 24})
    assert config.http.admin_key == Secret("k" * 24)
    assert config.http.host == "127.0.0.1"


def test_an_override_that_is_wrong_names_its_variable() -> None:
    with pytest.raises(ConfigError) as error:
        loads_config("", environ={"RABBITRY_HTTP_BIND": "8080"})
    assert (
        str(error.value) == 'http.bind (from RABBITRY_HTTP_BIND) must be "host:port" (got "8080")'
    )
    assert error.value.key == "http.bind"


def test_an_ipv6_bind_gives_host_and_port() -> None:
    http = loads_config('[http]\nbind = "[::1]:0"', environ={}).http
    assert (http.host, http.port) == ("::1", 0)


def test_unrelated_environment_variables_change_nothing() -> None:
    environ = {"RABBITRY_BROKER_URI": "memory://", "BROKER_URL": "memory://"}
    assert loads_config("", environ=environ) == loads_config("", environ={})


CARRIER = '[[carriers]]\nname = "smpp1"\nplugin = "smpp"\nprefixes = ["+44", "+33"]\n'


def test_carrier_options_read_secrets_from_the_environment() -> None:
    text = CARRIER + '[carriers.options]\nhost = "smpp.example"\npassword_env = "SMPP1_PASSWORD"\n'
    [carrier] = loads_config(text, environ={"SMPP1_PASSWORD": "hunter2"}).carriers
    assert carrier.options == {"host": "smpp.example", "password": Secret("hunter2")}
    assert carrier.options["password"].reveal() == "hunter2"
    assert carrier.prefixes == ("+44", "+33")  # failover order is kept


@pytest.mark.parametrize(
    "key", ["password", "api_key", "auth_token", "client_secret", "Passphrase"]
)
def test_carrier_options_with_secret_names_are_secrets(key: str) -> None:
    [carrier] = loads_config(CARRIER + f'[carriers.options]\n{key} = "s3cr3t"', environ={}).carriers
    assert carrier.options == {key: Secret("s3cr3t")}


def test_other_carrier_options_pass_through_untouched() -> None:
    text = CARRIER + '[carriers.options]\nwindow = 10\nsystem_type = "x"\nnested = { a = [1, 2] }'
    [carrier] = loads_config(text, environ={}).carriers
    assert carrier.options == {"window": 10, "system_type": "x", "nested": {"a": [1, 2]}}


def test_the_broker_url_variable_takes_a_clusters_nodes_comma_separated() -> None:
    nodes = "amqp://app:pw1@rabbit1:5672/sms,amqp://app:pw2@rabbit2:5672/sms"
    config = loads_config("", environ={"RABBITRY_BROKER_URL": nodes})
    assert [url.reveal() for url in config.broker.url.split()] == nodes.split(",")
    assert str(config.broker.url) == "amqp://***@rabbit1:5672/sms,amqp://***@rabbit2:5672/sms"
    with pytest.raises(ConfigError) as error:
        loads_config("", environ={"RABBITRY_BROKER_URL": f"{nodes},memory://"})
    assert error.value.key == "broker.url[2]"
