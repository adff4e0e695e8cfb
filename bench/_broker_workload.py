"""What the broker benchmarks send: one ~250-byte msgspec-JSON message type, for both sides."""

from __future__ import annotations

import json
import statistics
import sys
import uuid

import msgspec

URL = "amqp://guest:guest@127.0.0.1:5672/"
W1_MESSAGES = 20_000
W1_IN_FLIGHT = 256
PREFETCH = 256
W2_CALLS = 5_000
W2_CALLERS = 32


class SubmitSms(msgspec.Struct, frozen=True, tag="submit_sms"):
    """A submit command as the gateway would publish it (the W1 and W2 payload)."""

    id: str
    account: str
    sender: str
    recipient: str
    text: str
    segments: int = 1
    priority: int = 0


ENCODER = msgspec.json.Encoder()
DECODER = msgspec.json.Decoder(SubmitSms)


def sample(index: int) -> bytes:
    """The body of message `index`: 249 to 253 bytes of JSON."""
    return ENCODER.encode(
        SubmitSms(
            id=f"{uuid.UUID(int=index)}",
            account="account-000042",
            sender="RABBITRY",
            recipient=f"+4915{index:010d}",
            text="Your verification code is 123456. It expires in ten minutes. Do not share it.",
            segments=1,
        )
    )


def unique(prefix: str) -> str:
    return f"bench.{prefix}.{uuid.uuid4().hex[:12]}"


def latency_figures(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
    }


def report(figures: dict[str, float]) -> None:
    """The last line a benchmark subprocess prints: its figures as JSON."""
    sys.stdout.write(json.dumps(figures) + "\n")
    sys.stdout.flush()
