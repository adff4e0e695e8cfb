"""The SMS platform's configuration: the schema operators write in `rabbitry.toml`, its rules,
its environment variables, the platform's own pools, and the summary `rabbitry config check`
prints. The machinery (loading, secrets, errors, the runtime's tables) is conf's."""

from rabbitry.config._load import ENVIRONMENT, load_config, loads_config
from rabbitry.config._pools import PLATFORM_POOLS, effective_pools
from rabbitry.config._report import config_json, summary
from rabbitry.config._schema import Accounts, Carrier, Config, Http, Sms, Store, Tax
from rabbitry.config._webhooks import MIN_SIGNING_KEY_LENGTH, Webhooks

__all__ = [
    "ENVIRONMENT",
    "MIN_SIGNING_KEY_LENGTH",
    "PLATFORM_POOLS",
    "Accounts",
    "Carrier",
    "Config",
    "Http",
    "Sms",
    "Store",
    "Tax",
    "Webhooks",
    "config_json",
    "effective_pools",
    "load_config",
    "loads_config",
    "summary",
]
