"""`rabbitry config check FILE`: exit 0 and a summary, or exit 2 and one sentence on stderr."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import conf
from rabbitry.cli import cli

SHIPPED = Path(conf.__file__).parent / "rabbitry.toml"


@pytest.fixture(autouse=True)
def _no_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in [name for name in os.environ if name.startswith("RABBITRY_")]:
        monkeypatch.delenv(variable)


def test_a_good_file_prints_a_summary_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["config", "check", str(SHIPPED)]) == 0
    out, err = capsys.readouterr()
    assert out == (
        f"{SHIPPED}: valid: 1 carrier (sim), 3 pools (reports x1, inbound x1, callbacks x2), "
        "broker amqp://***@127.0.0.1:5672/, "
        "store sqlite:///./var/rabbitry.db, http 127.0.0.1:8080\n"
    )
    assert err == ""


def test_a_bad_file_prints_the_reason_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[[carriers]]\nname = "sim"\nplugin = "simulator"\nprefixes = ["+"]\ntps = 0\n')
    assert cli(["config", "check", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"rabbitry: {path}: carriers[0].tps must be > 0 (got 0)\n"


def test_a_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["config", "check", str(tmp_path / "nope.toml")]) == 2
    assert (
        capsys.readouterr().err
        == f'rabbitry: config file "{tmp_path / "nope.toml"}" does not exist\n'
    )


def test_json_shows_the_validated_config_with_secrets_masked(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RABBITRY_ADMIN_KEY", "the-real-admin-key")
    assert cli(["config", "check", "--json", str(SHIPPED)]) == 0
    out = capsys.readouterr().out
    assert "the-real-admin-key" not in out
    assert "guest:guest" not in out
    shown = json.loads(out)
    assert shown["http"] == {"bind": "127.0.0.1:8080", "admin_key": "***"}
    assert shown["broker"] == {"url": "amqp://***@127.0.0.1:5672/", "give_up_after": None}
    assert shown["rates"] == {"default": "0.0500", "+33": "0.0450"}
    assert shown["carriers"][0]["tps"] == 500
    assert shown["retry"]["max_attempts"] is None


def test_the_environment_applies_as_it_would_for_the_daemon(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RABBITRY_BROKER_URL", "memory://")
    assert cli(["config", "check", str(SHIPPED)]) == 0
    assert ", broker memory://, " in capsys.readouterr().out


def test_check_needs_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli(["config", "check"])
    assert exit_info.value.code == 2
    assert "the following arguments are required: file" in capsys.readouterr().err


def test_the_installed_command_exits_2_on_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[broker]\nuri = "memory://"\n')
    environ = {key: value for key, value in os.environ.items() if not key.startswith("RABBITRY_")}
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from rabbitry import main; sys.exit(main())",
         "config", "check", str(path)],
        capture_output=True, text=True, timeout=60, env=environ, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"rabbitry: {path}: unknown key broker.uri (did you mean broker.url?)\n"
