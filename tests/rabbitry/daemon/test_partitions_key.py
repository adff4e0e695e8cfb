"""`[accounts] partitions`: the count of account partition queues, read at start (the daemon's
layout follows it) and refused by a SIGHUP reload, like `currency`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conf import ConfigError
from rabbitry.config import load_config, loads_config
from rabbitry.daemon._reload import Reloader, ReloadRefused

from .test_currency import demo_text


def test_the_partition_count_is_32_unless_set() -> None:
    assert loads_config("", environ={}).accounts.partitions == 32
    assert loads_config("[accounts]\npartitions = 8\n", environ={}).accounts.partitions == 8
    with pytest.raises(ConfigError, match=r"accounts\.partitions"):
        loads_config("[accounts]\npartitions = 0\n", environ={})


async def test_a_reload_that_changes_the_partition_count_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rabbitry.toml"
    path.write_text(demo_text(tmp_path, "EUR"))
    running = load_config(path, environ={})
    path.write_text(demo_text(tmp_path, "EUR") + "\n[accounts]\npartitions = 16\n")
    none: Any = None  # refused before the reload touches the running tree
    reloader = Reloader(str(path), running, parts=none, root=none)
    with pytest.raises(ReloadRefused) as refused:
        await reloader.reload()
    assert str(refused.value) == (
        "[accounts] changed, which needs a restart; reload applies rates, carriers and pools only"
    )
