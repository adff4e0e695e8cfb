"""Rabbitry's configuration: the schema operators write, loading and validation."""

__all__: list[str] = []
