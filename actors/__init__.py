"""Actors: trio tasks with bounded mailboxes that exchange messages (tell and ask)."""

__all__: list[str] = []
