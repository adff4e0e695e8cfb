"""The broker layer: RabbitMQ (aiormq behind a bridge) and the in-memory broker."""

__all__: list[str] = []
