"""The AMQP seam without a broker: float headers as doubles, dead-letter headers flattened."""

from pamqp import commands as spec
from pamqp import decode, encode

from broker import Envelope
from broker._rabbitmq_wire import from_message, to_properties


def test_a_float_header_is_encoded_as_a_double() -> None:
    value = 1767225600.123456  # an epoch with microseconds: a 32-bit float keeps 7 digits
    encoded = encode.field_table({"at": value, "n": 3, "flag": True})
    _, decoded = decode.field_table(encoded)
    assert decoded == {"at": value, "n": 3, "flag": True}
    envelope = Envelope(message_id="m", type="t", body=b"", timestamp=0.0, headers={"at": value})
    assert from_message(to_properties(envelope), b"").headers["at"] == value


def test_x_death_is_flattened_like_the_memory_broker_does() -> None:
    deaths = [
        {"reason": "rejected", "queue": "work", "exchange": "sms", "count": 1},
        {"reason": "expired", "queue": "retry.5s", "exchange": "retry", "count": 2},
    ]
    properties = spec.Basic.Properties(
        message_id="m",
        headers={"x-death": deaths, "x-first-death-reason": "expired", "kept": "yes"},
    )
    headers = from_message(properties, b"").headers
    assert "x-death" not in headers
    assert headers["kept"] == "yes"
    assert (
        headers["x-last-death-reason"],
        headers["x-last-death-queue"],
        headers["x-last-death-exchange"],
    ) == ("rejected", "work", "sms")
    # RabbitMQ's own x-first-death-* win; the missing ones come from the oldest entry.
    assert (
        headers["x-first-death-reason"],
        headers["x-first-death-queue"],
        headers["x-first-death-exchange"],
    ) == ("expired", "retry.5s", "retry")
