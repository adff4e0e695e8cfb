"""Rabbitry's configuration: the schema operators write, loading and validation."""

from conf._errors import ConfigError
from conf._load import load_config, loads_config
from conf._report import config_json, summary
from conf._resolve import resolve_actors, resolve_import_path
from conf._schema import Backoff, Broker, Carrier, Config, Http, Logging, Pool, Retry, Store, Tax
from conf._secret import Secret, SecretURL, mask_url, split_url

__all__ = [
    "Backoff",
    "Broker",
    "Carrier",
    "Config",
    "ConfigError",
    "Http",
    "Logging",
    "Pool",
    "Retry",
    "Secret",
    "SecretURL",
    "Store",
    "Tax",
    "config_json",
    "load_config",
    "loads_config",
    "mask_url",
    "resolve_actors",
    "resolve_import_path",
    "split_url",
    "summary",
]
