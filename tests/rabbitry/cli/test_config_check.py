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
    monkeypatch.setenv("RABBITRY_ADMIN_KEY", "the-real-admin-key-0123456789")
    assert cli(["config", "check", "--json", str(SHIPPED)]) == 0
    out = capsys.readouterr().out
    assert "the-real-admin-key-0123456789" not in out
    assert "guest:guest" not in out
    shown = json.loads(out)
    assert shown["http"] == {
        "bind": "127.0.0.1:8080",
        "admin_key": "***",
        "idempotency_ttl": 86400.0,
        "idempotency_claim_timeout": 30.0,
        "read_timeout": 10.0,
        "max_connections": 1000,
        "certfile": None,
        "keyfile": None,
    }
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


SECRETS = {
    "pg-pass-1": "the store URL's password parameter",
    "ssl-pass-2": "the store URL's sslpassword",
    "amqp-tok-3": "the broker URL's token parameter",
    "url-key-4": "an option URL's api_key parameter",
    "hook-5": "webhook_secret",
    "req-key-6": "request.api_key",
    "deep-7": "request.auth.Token, a table deeper",
    "list-8": "request.keys, a list",
    "hdr-9": "the header X-Api-Secret",
    "hdr-10": "the header Authorization",
    "sig-11": "the header X-Signature",
    "auth-12": "auth.value",
    "opt-13": "a top-level option with key inside its name",
}
NESTED = """
[broker]
url = "amqp://rabbit@mq.internal/?auth_token=amqp-tok-3&heartbeat=30"
[store]
url = "postgresql://app@db.internal/rabbitry?password=pg-pass-1&sslpassword=ssl-pass-2"
[[carriers]]
name = "rest"
plugin = "http"
prefixes = ["+"]
[carriers.options]
url = "https://api.example/sms?api_key=url-key-4&region=eu"
webhook_secret = "hook-5"
api_key_id = "opt-13"
auth = { kind = "header", header = "X-Key", value = "auth-12" }
[carriers.options.request]
to = "{to}"
api_key = "req-key-6"
auth = { Token = "deep-7", region = "eu-west" }
keys = ["list-8"]
[carriers.options.headers]
X-Api-Secret = "hdr-9"
Authorization = "Bearer hdr-10"
X-Signature = "sig-11"
X-Region = "eu-west"
"""


def test_no_secret_prints_at_any_depth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "secrets.toml"
    path.write_text(NESTED)
    assert cli(["config", "check", str(path)]) == 0
    summary = capsys.readouterr().out
    assert cli(["config", "check", "--json", str(path)]) == 0
    shown = capsys.readouterr().out
    for secret, where in SECRETS.items():
        assert secret not in summary + shown, f"{where} printed"
    assert "store postgresql://***@db.internal/rabbitry?password=***&sslpassword=***" in summary
    options = json.loads(shown)["carriers"][0]["options"]
    assert options["request"] == {
        "to": "{to}",
        "api_key": "***",
        "auth": {"Token": "***", "region": "eu-west"},
        "keys": ["***"],
    }
    assert options["headers"]["X-Region"] == "eu-west"
    assert options["auth"] == {"kind": "header", "header": "X-Key", "value": "***"}
    assert options["url"] == "https://api.example/sms?api_key=***&region=eu"


@pytest.mark.parametrize(
    ("text", "environ", "said"),
    [
        (
            '[http]\nadmin_key = "change-me"\n',
            {},
            "http.admin_key is an example value (got ***), not a key",
        ),
        (
            '[http]\nbind = "127.0.0.1:0"\n',
            {"RABBITRY_ADMIN_KEY": "short-admin-key"},
            "http.admin_key (from RABBITRY_ADMIN_KEY) must be at least 24 characters (got 15)",
        ),
    ],
)
def test_the_daemon_refuses_a_weak_admin_key_and_the_check_says_so(
    tmp_path: Path, text: str, environ: dict[str, str], said: str
) -> None:
    """Exit 2, one sentence naming http.admin_key, before anything starts (no broker needed)."""
    path = tmp_path / "weak.toml"
    path.write_text(f'[broker]\nurl = "memory://"\n{text}')
    clean = {key: value for key, value in os.environ.items() if not key.startswith("RABBITRY_")}
    generate = 'generate one with: python -c "import secrets; print(secrets.token_urlsafe(32))"'
    for command in (["run", "--config", str(path)], ["config", "check", str(path)]):
        done = subprocess.run(
            [sys.executable, "-m", "rabbitry", *command],
            capture_output=True, text=True, timeout=60, env={**clean, **environ}, check=False,
        )  # fmt: skip
        assert (done.returncode, done.stdout) == (2, ""), command
        assert done.stderr == f"rabbitry: {path}: {said}; {generate}\n", command
        assert "change-me" not in done.stderr
        assert "short-admin-key" not in done.stderr
