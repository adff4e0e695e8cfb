"""The application's old module names (actors.platform, actors.carriers...) keep working for one
release, each use logged once as deprecated: a pool's actor path in a config, a carrier plugin's
entry point target, and an import in a plugin's own code."""

import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import rabbitry.compat._renamed as renamed
from rabbitry.carriers import SimulatorConnector, load_connector
from rabbitry.cli import cli
from rabbitry.compat import install_renamed_modules, renamed_module, renamed_path
from rabbitry.config import loads_config
from rabbitry.daemon import check_config
from rabbitry.daemon._build import import_actor
from rabbitry.platform import ReportsActor

CONFIG = """
[[pools]]
name = "reports"
actor = "actors.platform:ReportsActor"
queue = "sms.reports"
"""


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    """Each test sees its own first use of an old name (the log says it once per process)."""
    saved = set(renamed._logged)
    renamed._logged.clear()
    yield
    renamed._logged.clear()
    renamed._logged.update(saved)


def deprecations(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if getattr(r, "event", "") == "deprecated"]


def test_old_names_map_to_the_moved_modules_and_new_names_to_none() -> None:
    assert renamed_module("actors.sms") == "rabbitry.billing"
    assert renamed_module("actors.carriers.smpp._pdu") == "rabbitry.carriers.smpp._pdu"
    assert renamed_path("actors.platform:ReportsActor") == "rabbitry.platform:ReportsActor"
    assert renamed_path("actors.gateway") == "rabbitry.gateway"
    assert renamed_module("actors") is None  # the runtime's actors did not move
    assert renamed_module("actors.platforms") is None
    assert renamed_path("rabbitry.platform:ReportsActor") is None


def test_a_pool_naming_an_old_actor_path_loads_with_one_deprecation_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="rabbitry.deprecated"):
        assert import_actor("actors.platform:ReportsActor", "pools[0].actor") is ReportsActor
        assert import_actor("actors.platform:ReportsActor", "pools[0].actor") is ReportsActor
    assert deprecations(caplog) == [
        (
            "pools[0].actor names 'actors.platform:ReportsActor', which moved to "
            "'rabbitry.platform:ReportsActor'; the old name works until the next release: "
            "write the new one"
        )
    ]


def test_config_check_says_it_once_and_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in [name for name in os.environ if name.startswith("RABBITRY_")]:
        monkeypatch.delenv(variable)
    path = tmp_path / "old.toml"
    path.write_text(CONFIG)
    assert cli(["config", "check", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"{path}: valid: ")
    assert err == (
        f"rabbitry: {path}: warning: pools[0].actor names 'actors.platform:ReportsActor', which "
        "moved to 'rabbitry.platform:ReportsActor'; the old name works until the next release: "
        "write the new one\n"
    )


def test_the_daemon_checks_pass_with_the_old_path(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="rabbitry.deprecated"):
        check_config(loads_config(CONFIG, environ={}))
    assert len(deprecations(caplog)) == 1


def test_a_plugin_registered_under_an_old_entry_point_target_loads(
    install_plugin: Any, caplog: pytest.LogCaptureFixture
) -> None:
    install_plugin("legacy_carrier", {"legacy": "actors.carriers:SimulatorConnector"}, None)
    with caplog.at_level(logging.WARNING, logger="rabbitry.deprecated"):
        assert load_connector("legacy") is SimulatorConnector
    assert deprecations(caplog) == [
        (
            "the entry point of carrier plugin 'legacy' names "
            "'actors.carriers:SimulatorConnector', which moved to "
            "'rabbitry.carriers:SimulatorConnector'; the old name works until the next release: "
            "install a release of the plugin that names the new one"
        )
    ]


def test_an_old_and_a_new_target_of_one_name_are_the_same_object(install_plugin: Any) -> None:
    install_plugin("stale_rabbitry", {"twin": "actors.carriers:SimulatorConnector"}, None)
    install_plugin("fresh_rabbitry", {"twin": "rabbitry.carriers:SimulatorConnector"}, None)
    assert load_connector("twin") is SimulatorConnector


def test_a_plugin_importing_old_names_gets_the_moved_modules(
    install_plugin: Any, caplog: pytest.LogCaptureFixture
) -> None:
    install_plugin(
        "oldstyle_carrier",
        {"oldstyle": "oldstyle_carrier:Connector"},
        "from actors.carriers import SimulatorConnector as Connector\n"
        "import actors.carriers.smpp as smpp\n",
    )
    with caplog.at_level(logging.WARNING, logger="rabbitry.deprecated"):
        assert load_connector("oldstyle") is SimulatorConnector
    import rabbitry.carriers.smpp

    assert sys.modules["actors.carriers.smpp"] is rabbitry.carriers.smpp
    assert sys.modules["actors.carriers"] is sys.modules["rabbitry.carriers"]
    assert deprecations(caplog) == [
        (
            "an import names 'actors.carriers', which moved to 'rabbitry.carriers'; the old name "
            "works until the next release: write the new one"
        ),
        (
            "an import names 'actors.carriers.smpp', which moved to 'rabbitry.carriers.smpp'; the "
            "old name works until the next release: write the new one"
        ),
    ]


def test_installing_twice_adds_one_finder() -> None:
    install_renamed_modules()
    install_renamed_modules()
    finders = [f for f in sys.meta_path if type(f).__name__ == "_RenamedFinder"]
    assert len(finders) == 1
