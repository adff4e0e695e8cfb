"""deploy/: the compose file, the daemon's image, its config, haproxy's and systemd's files are
checked here without running them (CI has no Docker): they parse, pin their images, name files
that exist, and run commands the `rabbitry` command line takes on a config that loads."""

from __future__ import annotations

import configparser
import re
import secrets
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from rabbitry.cli import build_parser
from rabbitry.config import load_config
from rabbitry.gateway._routes import ROUTES
from supervisor import ExitStatus

ROOT = Path(__file__).parent.parent
DEPLOY = ROOT / "deploy"
PINNED = re.compile(r"^[a-z0-9./-]+:\d+(\.\d+)+[\w.-]*$")  # name:1.2.3..., never "latest"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def generated_env() -> dict[str, str]:
    """What an operator puts in `.env` (example.env's names, generated values)."""
    names = [
        line.split("=", 1)[0]
        for line in (DEPLOY / "example.env").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert names, "example.env names no variable"
    return {name: secrets.token_urlsafe(32) for name in names}


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's `${NAME}` and `${NAME:?message}`; a name missing from `env` fails the test."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in env, f"compose uses ${{{name}}}, which example.env does not name"
        return env[name]

    return re.sub(r"\$\{(\w+)(?::\?[^}]*)?\}", value, text)


def daemons(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose["services"].items()
        if service.get("image", "").startswith("rabbitry:")
    }


def test_every_image_is_pinned_to_a_version(compose: dict[str, Any]) -> None:
    images = {name: service.get("image") for name, service in compose["services"].items()}
    assert all(images.values()), f"a service without an image: {images}"
    for name, image in images.items():
        assert PINNED.match(image), f"service {name}: image {image!r} is not pinned to a version"
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert {images[name] for name in daemons(compose)} == {f"rabbitry:{version}"}
    base = re.search(r"^FROM (\S+)", (DEPLOY / "Dockerfile").read_text(), re.MULTILINE)
    assert base is not None
    assert PINNED.match(base.group(1)), "the Dockerfile's FROM is not pinned"


def test_the_system_has_three_rabbitmq_nodes_postgresql_two_daemons_and_one_port(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    nodes = [name for name, s in services.items() if s["image"].startswith("rabbitmq:")]
    assert len(nodes) == 3
    assert [name for name, s in services.items() if s["image"].startswith("postgres:")]
    assert len(daemons(compose)) == 2
    published = [s["ports"] for s in services.values() if "ports" in s]
    assert published == [["8080:8080"]], "only the load balancer publishes a port"
    cluster = (DEPLOY / "rabbitmq" / "rabbitmq.conf").read_text()
    for node in nodes:
        assert services[node]["hostname"] == node
        assert f"rabbit@{node}" in cluster, f"rabbitmq.conf does not list node {node}"


def test_every_file_the_compose_file_names_exists(compose: dict[str, Any]) -> None:
    named = 0
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).is_file(), f"service {name} mounts missing {source}"
                named += 1
        build = service.get("build")
        if build is not None:
            context = DEPLOY / build["context"]
            assert (context / build["dockerfile"]).is_file()
            for line in (DEPLOY / "Dockerfile").read_text().splitlines():
                if line.startswith("COPY "):
                    for source in line.split()[1:-1]:
                        assert (context / source).exists(), f"the Dockerfile copies {source}"
    assert named >= 4


def test_the_daemons_command_runs_the_mounted_config_and_it_loads(compose: dict[str, Any]) -> None:
    env = generated_env()
    for name, service in daemons(compose).items():
        arguments = build_parser().parse_args(service["command"][1:])
        assert service["command"][0] == "rabbitry"
        assert (arguments.command, arguments.broker) == ("run", None)
        mounts = dict(volume.split(":")[1::-1] for volume in service["volumes"])
        source = mounts.get(arguments.config)
        assert source is not None, f"{name} runs {arguments.config}, which is not mounted"
        environment = {
            key: interpolate(str(value), env) for key, value in service["environment"].items()
        }
        config = load_config(DEPLOY / source, environ=environment)
        assert config.store.url.reveal().startswith("postgresql://"), (
            "several daemons need PostgreSQL"
        )
        broker_urls = environment["RABBITRY_BROKER_URL"].split(",")
        assert len(broker_urls) == 3, "each daemon knows every node of the cluster"
        assert config.http.bind.endswith(":8080")
        health = service["healthcheck"]["test"][-1]
        assert "/readyz" in health
        assert ":8080" in health


def test_example_keys_are_refused_as_they_are(compose: dict[str, Any]) -> None:
    from conf import ConfigError

    example = dict(
        line.split("=", 1)
        for line in (DEPLOY / "example.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    service = next(iter(daemons(compose).values()))
    environment = {k: interpolate(str(v), example) for k, v in service["environment"].items()}
    with pytest.raises(ConfigError, match="example"):
        load_config(DEPLOY / "rabbitry.toml", environ=environment)


def test_haproxy_balances_every_daemon_and_checks_readyz(compose: dict[str, Any]) -> None:
    text = (DEPLOY / "haproxy.cfg").read_text()
    servers = re.findall(r"^\s*server (\S+) (\S+):(\d+) check", text, re.MULTILINE)
    assert {(name, host) for name, host, _ in servers} == {(n, n) for n in daemons(compose)}
    assert {port for _, _, port in servers} == {"8080"}
    check = re.search(r"option httpchk GET (\S+)", text)
    assert check is not None
    paths = {(route.method, route.template) for route in ROUTES}
    assert check.group(1) == "/readyz"
    assert ("GET", "/readyz") in paths
    haproxy = compose["services"]["haproxy"]
    assert "./haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in haproxy["volumes"]


def test_the_systemd_unit_runs_a_command_the_cli_takes() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string((DEPLOY / "rabbitry.service").read_text())
    service = unit["Service"]
    command = shlex.split(service["ExecStart"])
    assert command[0].endswith("/bin/rabbitry")
    arguments = build_parser().parse_args(command[1:])
    assert arguments.command == "run"
    assert service["KillSignal"] == "SIGTERM"  # the daemon drains on it
    assert service["RestartPreventExitStatus"] == str(int(ExitStatus.INVALID))  # a bad config
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert "EnvironmentFile" in service
    assert unit["Install"]["WantedBy"] == "multi-user.target"
