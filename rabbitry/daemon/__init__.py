"""The SMS platform as one supervised daemon: start-up, the tree, reload, ops, metrics and logs.

status = run_command("conf/rabbitry.toml", broker=None)     # `rabbitry run --config FILE`
await run_daemon(config, broker_url="memory://")             # the same, inside a trio program
"""

from rabbitry.daemon._demo import demo_batch, run_sms_demo, sms_demo_command
from rabbitry.daemon._logging import configure_logging, secrets_of
from rabbitry.daemon._run import run_command, run_daemon
from rabbitry.daemon._tree import PLATFORM_POOLS

__all__ = [
    "PLATFORM_POOLS",
    "configure_logging",
    "demo_batch",
    "run_command",
    "run_daemon",
    "run_sms_demo",
    "secrets_of",
    "sms_demo_command",
]
