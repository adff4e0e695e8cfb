"""The runtime's configuration machinery: TOML loading with environment overrides, secrets,
one-sentence errors with key paths, the rules and tables any daemon on the runtime needs
(broker, pools, retry, logging), and the base class of an application's own tables."""

from conf._check import (
    Problem,
    backoff_problems,
    broker_problems,
    decimal_string_problems,
    entries_problems,
    pool_problems,
    retry_problems,
)
from conf._errors import ConfigError, KeyPath, key_path, show
from conf._load import Loader
from conf._report import config_json
from conf._resolve import resolve_actors, resolve_import_path
from conf._schema import Backoff, Broker, Logging, Pool, Retry, Table, named_queues
from conf._secret import (
    SECRET_NAMES,
    SECRET_WORDS,
    Secret,
    SecretURL,
    SecretURLs,
    is_secret_name,
    mask_url,
    mask_urls_in,
    split_url,
    split_urls,
)

__all__ = [
    "SECRET_NAMES",
    "SECRET_WORDS",
    "Backoff",
    "Broker",
    "ConfigError",
    "KeyPath",
    "Loader",
    "Logging",
    "Pool",
    "Problem",
    "Retry",
    "Secret",
    "SecretURL",
    "SecretURLs",
    "Table",
    "backoff_problems",
    "broker_problems",
    "config_json",
    "decimal_string_problems",
    "entries_problems",
    "is_secret_name",
    "key_path",
    "mask_url",
    "mask_urls_in",
    "named_queues",
    "pool_problems",
    "resolve_actors",
    "resolve_import_path",
    "retry_problems",
    "show",
    "split_url",
    "split_urls",
]
