"""Every way a config on conf can be wrong reads as one sentence: key path, value, what was
expected. msgspec's errors are translated for any schema (thumbnailer.py here), and the runtime's
tables bring their rules (broker URL, pools, backoff, retry delays, unique names)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from thumbnailer import LOADER

from conf import ConfigError, Pool, decimal_string_problems, entries_problems, pool_problems

POOL = '[[pools]]\nname = "resize"\nactor = "app.resize:Resizer"\n'

CASES = [
    # unknown keys, with a suggestion when one is close, in any table of the schema
    (
        "[images]\nqualty = 5",
        "images.qualty",
        "unknown key images.qualty (did you mean images.quality?)",
    ),
    ("[imagse]\nquality = 5", "imagse", "unknown key imagse (did you mean images?)"),
    (
        '[broker]\nhost = "x"',
        "broker.host",
        "unknown key broker.host (expected one of: url, give_up_after)",
    ),
    (
        POOL + 'backoff = { kid = "constant" }',
        "pools[0].backoff.kid",
        "unknown key pools[0].backoff.kid (did you mean pools[0].backoff.kind?)",
    ),
    # types, bounds, choices
    ("[images]\nquality = 0", "images.quality", "images.quality must be >= 1 (got 0)"),
    ("[images]\nquality = 101", "images.quality", "images.quality must be <= 100 (got 101)"),
    ("[images]\nquality = 2.5", "images.quality", "images.quality must be an integer (got 2.5)"),
    ("[images]\nquality = true", "images.quality", "images.quality must be an integer (got true)"),
    (
        "[images]\nformats = []",
        "images.formats",
        "images.formats must be a non-empty list (got [])",
    ),
    (
        '[images]\nformats = ["gif"]',
        "images.formats[0]",
        'images.formats[0] must be one of "jpeg", "png", "webp" (got "gif")',
    ),
    ("[images]\nformats = 5", "images.formats", "images.formats must be a list (got 5)"),
    ("images = 5", "images", "images must be a table (got 5)"),
    ("[images]\nwatermark = 5", "images.watermark", "images.watermark must be a string (got ***)"),
    (
        "[images]\nquality = 1979-05-27",
        "images.quality",
        "images.quality must be an integer (got 1979-05-27)",
    ),
    ('[[pools]]\nname = "p"', "pools[0].actor", "pools[0].actor is required but missing"),
    (POOL + "size = 0", "pools[0].size", "pools[0].size must be >= 1 (got 0)"),
    (POOL + "period = 0", "pools[0].period", "pools[0].period must be > 0 (got 0)"),
    (
        POOL + 'restart = "always"',
        "pools[0].restart",
        'pools[0].restart must be one of "permanent", "temporary", "transient" (got "always")',
    ),
    (
        '[logging]\nlevel = "INFO"',
        "logging.level",
        'logging.level must be one of "critical", "debug", "error", "info", "warning" (got "INFO")',
    ),
    ("[retry]\nmax_attempts = 0", "retry.max_attempts", "retry.max_attempts must be >= 1 (got 0)"),
    # the runtime tables' rules
    (
        '[broker]\nurl = "http://rabbit/"',
        "broker.url",
        'broker.url must be an amqp://, amqps:// or memory:// URL (got "http://rabbit/")',
    ),
    (
        '[broker]\nurl = "ftp://app:s3cret@rabbit/"',
        "broker.url",
        'broker.url must be an amqp://, amqps:// or memory:// URL (got "ftp://***@rabbit/")',
    ),
    (
        '[broker]\nurl = "amqp:///vhost"',
        "broker.url",
        'broker.url must be an amqp://, amqps:// or memory:// URL (got "amqp:///vhost")',
    ),
    (
        POOL + POOL,
        "pools[1].name",
        'pools[1].name must be unique (got "resize", already used by pools[0].name)',
    ),
    (
        '[[pools]]\nname = "a b"\nactor = "a.b:C"',
        "pools[0].name",
        (
            'pools[0].name must be 1 to 64 letters, digits, "_", "-" or ".", '
            'starting with a letter or digit (got "a b")'
        ),
    ),
    (
        '[[pools]]\nname = "p"\nactor = "app/resize:Resizer"',
        "pools[0].actor",
        (
            'pools[0].actor must be an import path like "package.module:ClassName" '
            '(got "app/resize:Resizer")'
        ),
    ),
    (
        POOL + 'routing_keys = ["images.#", ""]',
        "pools[0].routing_keys[1]",
        'pools[0].routing_keys[1] must be a routing key of 1 to 255 bytes (got "")',
    ),
    (
        POOL + f'queue = "{"q" * 256}"',
        "pools[0].queue",
        f'pools[0].queue must be at most 255 bytes (got "{"q" * 256}")',
    ),
    (POOL + "period = inf", "pools[0].period", "pools[0].period must be finite (got inf)"),
    (
        POOL + "backoff = { max = inf }",
        "pools[0].backoff.max",
        "pools[0].backoff.max must be finite (got inf)",
    ),
    (
        POOL + 'backoff = { kind = "exponential", min = 0 }',
        "pools[0].backoff.min",
        "pools[0].backoff.min must be > 0 for an exponential backoff (got 0)",
    ),
    (
        POOL + 'backoff = { kind = "exponential", min = 5, max = 1 }',
        "pools[0].backoff.max",
        "pools[0].backoff.max must be >= pools[0].backoff.min (got 1 < 5)",
    ),
    (
        "[retry]\ndelays = [1, 0.0001]",
        "retry.delays[1]",
        "retry.delays[1] must be a number of seconds >= 0.001 (got 0.0001)",
    ),
    (
        "[retry]\ndelays = [inf]",
        "retry.delays[0]",
        "retry.delays[0] must be a number of seconds >= 0.001 (got inf)",
    ),
    # the application's own rule, after the runtime's
    (
        '[images]\nformats = ["png", "png"]',
        "images.formats",
        'images.formats must list each format once (got ["png", "png"])',
    ),
]


@pytest.mark.parametrize(("text", "key", "message"), CASES)
def test_a_bad_value_is_named_with_its_key_path_and_value(
    text: str, key: str, message: str
) -> None:
    with pytest.raises(ConfigError) as error:
        LOADER.loads(text, environ={})
    assert str(error.value) == message
    assert error.value.key == key
    assert isinstance(error.value, ValueError)


def test_entries_are_checked_in_file_order() -> None:
    pools = [
        Pool(name="a", actor="bad path"),
        Pool(name="a", actor="a.b:C"),
        Pool(name="b", actor="a.b:C", period=float("inf")),
    ]
    assert [where for where, _ in entries_problems(("workers",), pools, pool_problems)] == [
        ("workers", 0, "actor"),
        ("workers", 1, "name"),
        ("workers", 2, "period"),
    ]


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("0.50", None),
        ("12", None),
        (0.5, 'must be a decimal string like "0.20" (got the float 0.5: quote it)'),
        (2, 'must be a decimal string like "0.20" (got the integer 2: quote it)'),
        (True, 'must be a decimal string like "0.20" (got true)'),
        ("1e3", 'must be a decimal string like "0.20" (got "1e3")'),
        ("-1", 'must be a decimal string like "0.20" (got "-1")'),
    ],
)
def test_a_decimal_string_is_digits_with_an_optional_fraction(value: object, rule: str) -> None:
    found = list(decimal_string_problems(("tax",), value, "0.20"))
    assert found == ([] if rule is None else [(("tax",), rule)])


KNOWN = {
    "broker", "images", "pools", "logging", "retry",
    "url", "quality", "formats", "price", "watermark", "watermark_env", "format", "level",
    "delays", "max_attempts", "name", "actor", "size", "queue", "routing_keys", "prefetch",
    "kind", "restart", "intensity", "period", "backoff", "give_up_after",
}  # fmt: skip
TABLES = {
    "": ("", ""),
    "broker": ("[broker]\n", "broker."),
    "images": ("[images]\n", "images."),
    "logging": ("[logging]\n", "logging."),
    "retry": ("[retry]\n", "retry."),
    "pool": (POOL, "pools[0]."),
    "second pool": (POOL.replace("resize", "crop") + POOL, "pools[1]."),
}
unknown_keys = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True).filter(
    lambda key: key not in KNOWN
)


@given(table=st.sampled_from(sorted(TABLES)), key=unknown_keys)
def test_an_unknown_key_is_always_refused_with_its_path(table: str, key: str) -> None:
    opening, path = TABLES[table]
    with pytest.raises(ConfigError) as error:
        LOADER.loads(f"{opening}{key} = 1\n", environ={})
    assert error.value.key == f"{path}{key}"
    assert str(error.value).startswith(f"unknown key {path}{key} (")


@given(size=st.integers(min_value=-(2**31), max_value=0))
def test_any_pool_size_below_one_is_refused(size: int) -> None:
    with pytest.raises(ConfigError) as error:
        LOADER.loads(f"{POOL}size = {size}", environ={})
    assert str(error.value) == f"pools[0].size must be >= 1 (got {size})"
