"""`python -m bench carriers`: the SMPP connector submitting to a real SMSC on loopback.

- ``carriers.smpp_submit`` (segments/s, with p50_ms and p99_ms): 20,000 single-segment GSM-7
  messages through ``CarrierLink(SmppConnector(...), window=50, tps=None)`` to the smpp34 test
  SMSC (tests/rabbitry/carriers/smpp/peers/smsc_smpp34.py, Rust core, receipts off so both sides
  do the same work). Baseline, in the same run and against the same peer: a minimal raw-asyncio
  SMPP client pipelining the same submit_sm PDUs under a window of 50 and reading nothing but
  the answers' headers (bench/_carriers_smpp.py). Target: >= 2,000 segments/s.

Each measurement starts a fresh peer on a free port and runs the client in its own interpreter;
the two sides are interleaved, medians of 3.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench._report import Result, interleaved_medians

RUNS = 3
MESSAGES = 20_000
PEER = Path(__file__).resolve().parent.parent / "tests/rabbitry/carriers/smpp/peers/smsc_smpp34.py"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _start_peer() -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    peer = subprocess.Popen(
        [sys.executable, str(PEER), str(port), "--dlr", "none", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert peer.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = peer.stdout.readline()
        if not line:
            break
        if json.loads(line).get("event") == "listening":
            return peer, port
    peer.kill()
    peer.wait()
    raise RuntimeError(f"bench: the smpp34 peer ({PEER}) did not start listening on port {port}")


def _measure(side: str, extras: dict[str, list[float]]) -> Callable[[], float]:
    def measure() -> float:
        peer, port = _start_peer()
        try:
            completed = subprocess.run(
                [sys.executable, "-m", "bench._carriers_smpp", side, str(port), str(MESSAGES)],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
        finally:
            peer.kill()
            peer.wait()
            if peer.stdout is not None:
                peer.stdout.close()
        if completed.returncode != 0:
            raise RuntimeError(
                f"bench: _carriers_smpp {side} failed (exit {completed.returncode}): "
                f"{completed.stderr.strip()[-2000:]}"
            )
        figures: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
        for key, value in figures.items():
            if key != "value":
                extras.setdefault(key, []).append(float(value))
        return float(figures["value"])

    return measure


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def run() -> Iterator[Result]:
    ours: dict[str, list[float]] = {}
    theirs: dict[str, list[float]] = {}
    value, baseline = interleaved_medians(
        RUNS, _measure("ours", ours), _measure("baseline", theirs)
    )
    extra = {key: round(_median(values), 3) for key, values in ours.items()}
    extra.update({f"baseline_{key}": round(_median(values), 3) for key, values in theirs.items()})
    extra["messages"] = MESSAGES
    extra["window"] = 50
    yield Result("carriers.smpp_submit", value, "segments/s", baseline=baseline, extra=extra)
