"""The SMS platform as one supervised daemon: start-up, the tree, reload, ops, metrics and logs.

config = load_checked_config("conf/rabbitry.toml")
status = await run_daemon(config)                            # `rabbitry run --config FILE`
status = await run_daemon(config, broker_url="memory://")    # everything in this process
"""

from rabbitry.daemon._build import check_config, load_checked_config
from rabbitry.daemon._demo import demo_batch, run_sms_demo
from rabbitry.daemon._logging import configure_logging, secrets_of
from rabbitry.daemon._run import START_FAILURES, run_daemon

__all__ = [
    "START_FAILURES",
    "check_config",
    "configure_logging",
    "demo_batch",
    "load_checked_config",
    "run_daemon",
    "run_sms_demo",
    "secrets_of",
]
