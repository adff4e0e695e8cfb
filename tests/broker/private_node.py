"""A private RabbitMQ node for fault tests: own ports, own data directory, killed and cut at will.

Started from the installed ``rabbitmq-server`` (MEASUREMENTS.md, "A private RabbitMQ node for
fault tests"), so the shared broker on 5672 is never disturbed::

    node = PrivateNode.create()
    node.start()                       # blocks until the AMQP port answers
    node.close_all_connections()       # every client connection is cut (CONNECTION_FORCED)
    node.kill()                        # kill -9 of the beam process: a crash
    node.start()                       # same data directory: durable queues survive
    node.stop(); node.remove()

Several nodes can run at once (each has its own name), and form a cluster::

    first, second = PrivateNode.create(), PrivateNode.create()
    first.start(); second.start()
    second.join(first)                 # stop_app, join_cluster, start_app

Blocking (subprocess) code: call it from trio through ``trio.to_thread.run_sync``. Raises
NodeFailed with the tail of the node's log when it does not come up.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["NodeFailed", "PrivateNode"]

START_TIMEOUT = 60.0
_NUMBERS = itertools.count(1)


class NodeFailed(RuntimeError):  # noqa: N818 - named after what happened
    """The private node did not start or stop; the message carries the log tail."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


class PrivateNode:
    """One RabbitMQ node in a temporary directory owned by the ``rabbitmq`` user."""

    def __init__(
        self, directory: Path, name: str, port: int, dist_port: int, tls_port: int | None = None
    ) -> None:
        self.directory = directory
        self.name = name
        self.port = port
        self.dist_port = dist_port
        self.tls_port = tls_port

    @classmethod
    def create(cls, *, tls: tuple[Path, Path, Path] | None = None) -> PrivateNode:
        """A node with a name of its own (this process's id and a counter) and free ports;
        with `tls` (CA, certificate and key PEM files) an AMQPS listener on `tls_port` too."""
        directory = Path(tempfile.mkdtemp(prefix="rabbitry-node-"))
        number = next(_NUMBERS)
        name = f"rabbitry-{os.getpid()}@localhost"
        if number > 1:
            name = f"rabbitry-{os.getpid()}-{number}@localhost"
        node = cls(directory, name, free_port(), free_port(), free_port() if tls else None)
        (directory / "enabled_plugins").write_text("[].\n")
        conf = f"listeners.tcp.local = 127.0.0.1:{node.port}\nloopback_users = none\n"
        if tls is not None:
            ca, cert, key = (shutil.copy(path, directory / path.name) for path in tls)
            conf += (
                f"listeners.ssl.default = 127.0.0.1:{node.tls_port}\n"
                f"ssl_options.cacertfile = {ca}\nssl_options.certfile = {cert}\n"
                f"ssl_options.keyfile = {key}\nssl_options.verify = verify_none\n"
                "ssl_options.fail_if_no_peer_cert = false\n"
            )
        (directory / "rabbitmq.conf").write_text(conf)
        user = pwd.getpwnam("rabbitmq")
        for path in [directory, *directory.iterdir()]:
            os.chown(path, user.pw_uid, user.pw_gid)
        return node

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _environment(self) -> dict[str, str]:
        directory = self.directory
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(directory / "log"),
            "RABBITMQ_PID_FILE": str(directory / "node.pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(directory / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(directory / "rabbitmq"),
        }

    def log_tail(self, lines: int = 30) -> str:
        tails = []
        for log in sorted((self.directory / "log").glob("*.log")):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            tails.append(f"--- {log.name}\n" + "\n".join(text))
        return "\n".join(tails) or "(no log written)"

    def start(self) -> None:
        """Start the node (detached) and wait until its AMQP port answers."""
        subprocess.run(
            ["rabbitmq-server", "-detached"],
            env=self._environment(),
            check=False,
            capture_output=True,
            timeout=30,
        )
        deadline = time.monotonic() + START_TIMEOUT
        # Polling an external process's port: there is nothing to wait on instead.
        while not port_open(self.port):
            if time.monotonic() > deadline:
                raise NodeFailed(
                    f"the private RabbitMQ node {self.name!r} did not open port {self.port!r} "
                    f"within {START_TIMEOUT!r} s; its log ends with:\n{self.log_tail()}"
                )
            time.sleep(0.2)

    def ctl(self, *arguments: str, timeout: float = 60.0) -> str:
        """Run ``rabbitmqctl -n NODE ARGUMENTS``; return its output."""
        done = subprocess.run(
            ["rabbitmqctl", "-n", self.name, *arguments],
            env=self._environment(),
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise NodeFailed(
                f"rabbitmqctl {' '.join(arguments)!r} failed on {self.name!r}: "
                f"{done.stdout}{done.stderr}"
            )
        return done.stdout

    def join(self, other: PrivateNode) -> None:
        """Make this (running, empty) node a member of `other`'s cluster."""
        self.ctl("stop_app")
        self.ctl("join_cluster", other.name)
        self.ctl("start_app")

    def close_all_connections(self, reason: str = "fault test") -> None:
        self.ctl("close_all_connections", reason)

    def connection_count(self) -> int:
        return len(self.ctl("list_connections", "-q", "name").split("\n")) - 1

    def pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            return int((self.directory / "node.pid").read_text().strip())
        return None

    def kill(self) -> None:
        """kill -9 the node's beam process (a crash); its port closes."""
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)  # polling an external process (see start)

    def stop(self) -> None:
        """Stop the node gracefully (or kill it if that fails)."""
        try:
            self.ctl("stop", timeout=60)
        except (NodeFailed, subprocess.TimeoutExpired):
            self.kill()

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
