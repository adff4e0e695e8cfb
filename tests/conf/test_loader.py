"""conf.Loader on a schema of its own (thumbnailer.py): the file, the environment, the steps in
order, the defaults of the runtime's tables, and the JSON told back."""

import json
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
from thumbnailer import LOADER, Images, Settings

from conf import (
    Backoff,
    ConfigError,
    Loader,
    Pool,
    Secret,
    SecretURL,
    Table,
    config_json,
    named_queues,
)


def test_an_empty_file_is_every_default() -> None:
    settings = LOADER.loads("", environ={})
    assert settings == Settings()
    assert settings.broker.url == SecretURL("amqp://guest:guest@127.0.0.1:5672/")
    assert settings.images == Images(quality=85, formats=("jpeg",), price=Decimal("0.001"))
    assert settings.pools == ()
    assert (settings.logging.format, settings.logging.level) == ("logfmt", "info")
    assert settings.retry.delays == (1.0, 5.0, 30.0, 120.0, 600.0)
    assert (settings.retry.max_attempts, settings.retry.attempts) == (None, 6)


def test_a_pool_takes_its_defaults_and_its_name_as_its_queue() -> None:
    [pool] = LOADER.loads('[[pools]]\nname = "resize"\nactor = "app.resize:Resizer"').pools
    assert (pool.queue, pool.size, pool.prefetch, pool.kind) == ("resize", 1, 10, "consumer")
    assert (pool.restart, pool.intensity, pool.period) == ("permanent", 3, 5.0)
    assert pool.backoff == Backoff(kind="none", min=0.1, max=30.0, multiplier=2.0, jitter=0.2)
    assert pool.routing_keys == ()


def test_named_queues_names_only_the_queues_left_empty() -> None:
    pools = [Pool(name="a", actor="x.y:A"), Pool(name="b", actor="x.y:B", queue="b.rpc")]
    assert [pool.queue for pool in named_queues(pools)] == ["a", "b.rpc"]


def test_the_settings_are_frozen() -> None:
    settings = LOADER.loads("", environ={})
    with pytest.raises(AttributeError):
        settings.images.quality = 10  # type: ignore[misc]


def test_a_table_refuses_unknown_keys_and_is_frozen() -> None:
    class Plain(Table, frozen=True):
        size: int = 1

    with pytest.raises(msgspec.ValidationError, match="unknown field `sise`"):
        msgspec.convert({"sise": 2}, Plain)
    with pytest.raises(AttributeError):
        Plain().size = 2  # type: ignore[misc]


def test_the_environment_overrides_the_file_and_fills_a_table_left_out() -> None:
    text = '[broker]\nurl = "amqp://a:b@rabbit/"\n'
    environ = {"THUMBS_BROKER_URL": "memory://", "THUMBS_LOG_LEVEL": "debug"}
    settings = LOADER.loads(text, environ=environ)
    assert settings.broker.url == SecretURL("memory://")
    assert settings.logging.level == "debug"


def test_a_wrong_override_names_its_variable() -> None:
    with pytest.raises(ConfigError) as error:
        LOADER.loads("", environ={"THUMBS_QUALITY": "high"})
    assert (
        str(error.value) == 'images.quality (from THUMBS_QUALITY) must be an integer (got "high")'
    )
    assert error.value.key == "images.quality"
    with pytest.raises(ConfigError) as error:
        LOADER.loads("", environ={"THUMBS_BROKER_URL": "ftp://u:s3cret@host/"})
    assert str(error.value) == (
        "broker.url (from THUMBS_BROKER_URL) must be an amqp://, amqps:// or memory:// URL "
        '(got "ftp://***@host/")'
    )


def test_a_loader_without_environment_reads_none() -> None:
    plain = Loader(Settings)
    assert plain.loads("", environ={"THUMBS_QUALITY": "1"}).images.quality == 85


def test_raw_checks_see_what_the_operator_wrote() -> None:
    with pytest.raises(ConfigError) as error:
        LOADER.loads("[images]\nprice = 0.001", environ={})
    assert str(error.value) == (
        'images.price must be a decimal string like "0.001" (got the float 0.001: quote it)'
    )
    assert LOADER.loads('[images]\nprice = "0.0010"').images.price == Decimal("0.0010")


def test_raw_checks_run_before_decoding_and_checks_after() -> None:
    # Both a raw problem and a type problem: the raw check's comes first.
    with pytest.raises(ConfigError) as error:
        LOADER.loads('[images]\nprice = 1\nquality = "x"', environ={})
    assert error.value.key == "images.price"
    # A type problem and a rule problem: decoding stops first.
    with pytest.raises(ConfigError) as error:
        LOADER.loads('[broker]\nurl = "http://x/"\n[images]\nquality = 0', environ={})
    assert error.value.key == "images.quality"


def test_prepare_completes_the_settings_before_the_checks() -> None:
    text = '[images]\nwatermark_env = "MARK"\n[[pools]]\nname = "p"\nactor = "a.b:C"'
    settings = LOADER.loads(text, environ={"MARK": "(c) ACME"})
    assert settings.images.watermark == Secret("(c) ACME")
    assert settings.pools[0].queue == "p"


def test_an_error_of_prepare_names_its_key_and_source() -> None:
    with pytest.raises(ConfigError) as error:
        LOADER.loads('[images]\nwatermark_env = "MARK"', environ={}, source="thumbs.toml")
    assert str(error.value) == 'images.watermark_env names "MARK", which is not set'
    assert (error.value.key, error.value.source) == ("images.watermark_env", "thumbs.toml")


def test_a_file_is_read_and_named_in_its_errors(tmp_path: Path) -> None:
    path = tmp_path / "thumbs.toml"
    path.write_text("[images]\nquality = 0\n")
    with pytest.raises(ConfigError) as error:
        LOADER.load(path, environ={})
    assert str(error.value) == "images.quality must be >= 1 (got 0)"
    assert error.value.source == str(path)
    path.write_text("[images]\nquality = 70\n")
    assert LOADER.load(path, environ={}).images.quality == 70


def test_a_toml_syntax_error_names_the_source_line_and_column() -> None:
    with pytest.raises(ConfigError) as error:
        LOADER.loads("[images]\nquality = = 3\n", environ={}, source="thumbs.toml")
    assert str(error.value) == "thumbs.toml is not valid TOML: invalid value (at line 2, column 11)"
    assert error.value.key is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, 'config file "{path}" does not exist'),
        (b'[images]\nwatermark = "caf\xe9"\n', 'config file "{path}" is not UTF-8 text (byte 25)'),
    ],
    ids=["missing", "latin-1"],
)
def test_a_file_that_cannot_be_read_is_named(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "thumbs.toml"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as error:
        LOADER.load(path, environ={})
    assert str(error.value) == message.format(path=path)
    assert (error.value.key, error.value.source) == (None, str(path))


def test_a_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        LOADER.load(tmp_path, environ={})
    assert str(error.value) == f'config file "{tmp_path}" cannot be read (Is a directory)'


def test_config_json_fills_defaults_masks_secrets_and_keeps_decimal_digits() -> None:
    text = (
        '[broker]\nurl = "amqp://app:s3cret-pass@rabbit/"\n'
        '[images]\nprice = "0.00000010"\nwatermark = "s3cret-mark"\n'
    )
    shown = config_json(LOADER.loads(text, environ={})).decode()
    assert "s3cret" not in shown
    data = json.loads(shown)
    assert data["broker"] == {"url": "amqp://***@rabbit/", "give_up_after": None}
    assert data["images"]["price"] == "0.00000010"
    assert data["images"]["watermark"] == "***"
    assert data["retry"] == {"delays": [1.0, 5.0, 30.0, 120.0, 600.0], "max_attempts": None}
