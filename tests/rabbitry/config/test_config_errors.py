"""Every way a config can be wrong reads as one sentence: key path, value, what was expected."""

from pathlib import Path

import pytest

from conf import ConfigError
from rabbitry.config import load_config, loads_config

CARRIER = '[[carriers]]\nname = "sim"\nplugin = "simulator"\nprefixes = ["+"]\n'
POOL = '[[pools]]\nname = "refunds"\nactor = "app.refunds:Refunds"\n'

GENERATE = 'generate one with: python -c "import secrets; print(secrets.token_urlsafe(32))"'
CASES = [
    # unknown keys, with a suggestion when one is close
    (
        '[broker]\nuri = "memory://"',
        "broker.uri",
        "unknown key broker.uri (did you mean broker.url?)",
    ),
    ('[brokr]\nurl = "memory://"', "brokr", "unknown key brokr (did you mean broker?)"),
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
    (
        CARRIER + "tsp = 5",
        "carriers[0].tsp",
        "unknown key carriers[0].tsp (did you mean carriers[0].tps?)",
    ),
    # types and bounds
    (CARRIER + "tps = 0", "carriers[0].tps", "carriers[0].tps must be > 0 (got 0)"),
    (CARRIER + "tps = -1.5", "carriers[0].tps", "carriers[0].tps must be > 0 (got -1.5)"),
    (CARRIER + 'tps = "fast"', "carriers[0].tps", 'carriers[0].tps must be a number (got "fast")'),
    (
        CARRIER + "tps = inf",
        "carriers[0].tps",
        "carriers[0].tps must be finite; leave it out for no limit (got inf)",
    ),
    (CARRIER + "links = 0", "carriers[0].links", "carriers[0].links must be >= 1 (got 0)"),
    (
        CARRIER + "links = 3\nwindow = 2",
        "carriers[0].links",
        (
            "carriers[0].links must be <= window, since each link needs one submit in flight"
            " (got links=3, window=2); raise window or lower links"
        ),
    ),
    (POOL + "size = 0", "pools[0].size", "pools[0].size must be >= 1 (got 0)"),
    (POOL + 'size = "3"', "pools[0].size", 'pools[0].size must be an integer (got "3")'),
    (POOL + "size = true", "pools[0].size", "pools[0].size must be an integer (got true)"),
    (POOL + "size = 2.5", "pools[0].size", "pools[0].size must be an integer (got 2.5)"),
    (POOL + "prefetch = 0", "pools[0].prefetch", "pools[0].prefetch must be >= 1 (got 0)"),
    (POOL + "intensity = -1", "pools[0].intensity", "pools[0].intensity must be >= 0 (got -1)"),
    (POOL + "period = 0", "pools[0].period", "pools[0].period must be > 0 (got 0)"),
    (
        POOL + 'restart = "always"',
        "pools[0].restart",
        'pools[0].restart must be one of "permanent", "temporary", "transient" (got "always")',
    ),
    (
        POOL + 'kind = "topic"',
        "pools[0].kind",
        'pools[0].kind must be one of "consumer", "rpc" (got "topic")',
    ),
    (
        POOL + "backoff = { jitter = 2 }",
        "pools[0].backoff.jitter",
        "pools[0].backoff.jitter must be <= 1 (got 2)",
    ),
    (
        POOL + 'backoff = { kind = "exponential", min = 5, max = 1 }',
        "pools[0].backoff.max",
        "pools[0].backoff.max must be >= pools[0].backoff.min (got 1 < 5)",
    ),
    (
        POOL + 'backoff = { kind = "exponential", min = 0 }',
        "pools[0].backoff.min",
        "pools[0].backoff.min must be > 0 for an exponential backoff (got 0)",
    ),
    (POOL + "backoff = 3", "pools[0].backoff", "pools[0].backoff must be a table (got 3)"),
    ("broker = 5", "broker", "broker must be a table (got 5)"),
    ("carriers = 5", "carriers", "carriers must be a list (got 5)"),
    ("[http]\nbind = 8080", "http.bind", "http.bind must be a string (got 8080)"),
    (
        '[logging]\nlevel = "INFO"',
        "logging.level",
        'logging.level must be one of "critical", "debug", "error", "info", "warning" (got "INFO")',
    ),
    (
        '[logging]\nformat = "xml"',
        "logging.format",
        'logging.format must be one of "json", "logfmt" (got "xml")',
    ),
    ("[retry]\ndelays = []", "retry.delays", "retry.delays must be a non-empty list (got [])"),
    (
        "[retry]\ndelays = [1, 0]",
        "retry.delays[1]",
        "retry.delays[1] must be a number of seconds >= 0.001 (got 0)",
    ),
    ("[retry]\nmax_attempts = 0", "retry.max_attempts", "retry.max_attempts must be >= 1 (got 0)"),
    ("[retry]\ndelays = 5", "retry.delays", "retry.delays must be a list (got 5)"),
    # missing keys
    (
        '[[carriers]]\nname = "sim"\nplugin = "simulator"',
        "carriers[0].prefixes",
        "carriers[0].prefixes is required but missing",
    ),
    ('[[pools]]\nname = "p"', "pools[0].actor", "pools[0].actor is required but missing"),
    # formats
    ('[http]\nbind = "8080"', "http.bind", 'http.bind must be "host:port" (got "8080")'),
    (
        '[http]\nbind = "localhost:65536"',
        "http.bind",
        'http.bind must be "host:port" (got "localhost:65536")',
    ),
    ('[http]\nbind = "a b:80"', "http.bind", 'http.bind must be "host:port" (got "a b:80")'),
    ('[http]\nbind = "::1:80"', "http.bind", 'http.bind must be "host:port" (got "::1:80")'),
    (
        '[http]\nadmin_key = ""',
        "http.admin_key",
        "http.admin_key must not be empty; leave it out to disable the admin API",
    ),
    (
        '[http]\nadmin_key = "0123456789abcdef0123456"',
        "http.admin_key",
        f"http.admin_key must be at least 24 characters (got 23); {GENERATE}",
    ),
    *(
        (
            f'[http]\nadmin_key = "{example}"',
            "http.admin_key",
            f"http.admin_key is an example value (got ***), not a key; {GENERATE}",
        )
        for example in ("change-me", "Demo-Admin-Key", "changeme")
    ),
    (
        '[broker]\nurl = "http://rabbit/"',
        "broker.url",
        'broker.url must be an amqp://, amqps:// or memory:// URL (got "http://rabbit/")',
    ),
    (
        '[broker]\nurl = "amqp://"',
        "broker.url",
        'broker.url must be an amqp://, amqps:// or memory:// URL (got "amqp://")',
    ),
    (
        '[store]\nurl = "mysql://db/ledger"',
        "store.url",
        'store.url must be a sqlite:///path or postgresql://host/database URL (got "mysql://db/ledger")',
    ),
    (
        '[store]\nurl = "sqlite://"',
        "store.url",
        'store.url must be a sqlite:///path or postgresql://host/database URL (got "sqlite://")',
    ),
    (
        '[store]\nurl = "sqlite:///var/db.sqlite?synchronus=FULL"',
        "store.url",
        (
            "store.url is not usable: store URL 'sqlite:///var/db.sqlite?synchronus=FULL' has"
            " unknown options ['synchronus']; a sqlite URL takes only busy_timeout and synchronous"
        ),
    ),
    # rates and tax: decimal strings, never floats
    (
        '[rates]\n"+33" = 0.045',
        'rates."+33"',
        'rates."+33" must be a decimal string like "0.0450" (got the float 0.045: quote it)',
    ),
    (
        "[rates]\ndefault = 1",
        "rates.default",
        'rates.default must be a decimal string like "0.0450" (got the integer 1: quote it)',
    ),
    (
        '[rates]\ndefault = "1e-3"',
        "rates.default",
        'rates.default must be a decimal string like "0.0450" (got "1e-3")',
    ),
    (
        '[rates]\ndefault = "-0.05"',
        "rates.default",
        'rates.default must be a decimal string like "0.0450" (got "-0.05")',
    ),
    (
        '[rates]\n"33" = "0.05"',
        "rates.33",
        'rates.33 is not a rate key: use "default" or "+" followed by digits, like "+33"',
    ),
    ("rates = 5", "rates", "rates must be a table (got 5)"),
    (
        "[tax]\nrate = 0.2",
        "tax.rate",
        'tax.rate must be a decimal string like "0.20" (got the float 0.2: quote it)',
    ),
    (
        '[tax]\nrate = "20"',
        "tax.rate",
        'tax.rate must be a fraction from 0 to 1, like "0.20" for 20% (got "20")',
    ),
    # carriers and pools
    (
        '[[carriers]]\nname = "sim"\nplugin = "simulator"\nprefixes = []',
        "carriers[0].prefixes",
        "carriers[0].prefixes must be a non-empty list (got [])",
    ),
    (
        '[[carriers]]\nname = "sim"\nplugin = "simulator"\nprefixes = ["+", "33"]',
        "carriers[0].prefixes[1]",
        'carriers[0].prefixes[1] must be "+" followed by digits, like "+33" (got "33")',
    ),
    (
        '[[carriers]]\nname = "sim"\nplugin = "simulator"\nprefixes = ["+33", "+33"]',
        "carriers[0].prefixes[1]",
        'carriers[0].prefixes[1] is listed twice (got "+33"); list each prefix once',
    ),
    (
        CARRIER + CARRIER,
        "carriers[1].name",
        'carriers[1].name must be unique (got "sim", already used by carriers[0].name)',
    ),
    (
        '[[carriers]]\nname = "a/b"\nplugin = "simulator"\nprefixes = ["+"]',
        "carriers[0].name",
        (
            'carriers[0].name must be 1 to 64 letters, digits, "_", "-" or ".", '
            'starting with a letter or digit (got "a/b")'
        ),
    ),
    (
        '[[carriers]]\nname = "sim"\nplugin = "my plugin"\nprefixes = ["+"]',
        "carriers[0].plugin",
        'carriers[0].plugin must be a plugin name like "simulator" (got "my plugin")',
    ),
    (
        POOL + POOL,
        "pools[1].name",
        'pools[1].name must be unique (got "refunds", already used by pools[0].name)',
    ),
    (
        '[[pools]]\nname = "p"\nactor = "app.refunds.Refunds"',
        "pools[0].actor",
        (
            'pools[0].actor must be an import path like "package.module:ClassName" '
            '(got "app.refunds.Refunds")'
        ),
    ),
    (
        POOL + 'routing_keys = [""]',
        "pools[0].routing_keys[0]",
        'pools[0].routing_keys[0] must be a routing key of 1 to 255 bytes (got "")',
    ),
    (
        POOL + f'queue = "{"q" * 256}"',
        "pools[0].queue",
        f'pools[0].queue must be at most 255 bytes (got "{"q" * 256}")',
    ),
    (
        CARRIER + '[carriers.options]\npassword_env = "RABBITRY_TEST_UNSET"',
        "carriers[0].options.password_env",
        (
            "carriers[0].options.password_env names the environment variable "
            '"RABBITRY_TEST_UNSET", which is not set'
        ),
    ),
    (
        CARRIER + "[carriers.options]\npassword_env = 5",
        "carriers[0].options.password_env",
        "carriers[0].options.password_env must name an environment variable (got 5)",
    ),
    (
        CARRIER + '[carriers.options]\npassword_env = "P"\npassword = "x"',
        "carriers[0].options.password_env",
        "carriers[0].options.password_env and carriers[0].options.password are both set; keep one",
    ),
]


@pytest.mark.parametrize(("text", "key", "message"), CASES)
def test_a_bad_value_is_named_with_its_key_path_and_value(
    text: str, key: str, message: str
) -> None:
    with pytest.raises(ConfigError) as error:
        loads_config(text, environ={"P": "x"})
    assert str(error.value) == message
    assert error.value.key == key
    assert isinstance(error.value, ValueError)


def test_a_toml_syntax_error_names_the_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "rabbitry.toml"
    path.write_text('[broker]\nurl = "memory://"\nbind = = 3\n')
    with pytest.raises(ConfigError) as error:
        load_config(path, environ={})
    assert str(error.value) == f"{path} is not valid TOML: invalid value (at line 3, column 8)"
    assert error.value.key is None
    assert error.value.source == str(path)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as error:
        load_config(path, environ={})
    assert str(error.value) == f'config file "{path}" does not exist'


def test_a_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(tmp_path, environ={})
    assert str(error.value) == f'config file "{tmp_path}" cannot be read (Is a directory)'


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[http]\nadmin_key = "caf\xe9"\n')
    with pytest.raises(ConfigError) as error:
        load_config(path, environ={})
    assert str(error.value) == f'config file "{path}" is not UTF-8 text (byte 23)'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[http]\nbind = 1979-05-27", "http.bind must be a string (got 1979-05-27)"),
        ("[http]\nbind = 07:32:00", "http.bind must be a string (got 07:32:00)"),
        ('[http]\nbind = { host = "x" }', "http.bind must be a string (got a table)"),
        ("[[pools]]\nname = 5", "pools[0].name must be a string (got 5)"),
        ("[[carriers]]\nname = -inf", "carriers[0].name must be a string (got -inf)"),
    ],
)
def test_values_are_shown_as_toml_writes_them(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        loads_config(text, environ={})
    assert str(error.value) == message
