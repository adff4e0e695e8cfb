"""Checking a Rabbitry webhook in your receiver: verify(secret, header, raw_body)."""

import hashlib
import hmac
import time


def verify(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
    """Whether `header` (Rabbitry-Signature) signs the raw `body` with your `secret` ("whsec_..."),
    sent less than `tolerance` seconds ago (older ones may be replays)."""
    fields = [part.split("=", 1) for part in header.split(",") if "=" in part]
    stamps = [value for name, value in fields if name == "t"]
    if len(stamps) != 1 or not stamps[0].isascii() or not stamps[0].isdigit():
        return False
    if abs(time.time() - int(stamps[0])) > tolerance:
        return False
    signed = f"{stamps[0]}.".encode() + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, value) for name, value in fields if name == "v1")
