"""Supervision trees of trio actors: OTP strategies, restart intensity, backoff, snapshots."""

from supervisor._cli import cli

__rabbitry__ = True  # lets `rabbitry` tell this package from the Supervisor process manager

__all__ = ["cli"]
