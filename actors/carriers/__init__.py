"""Carrier connectors: the plugin API, the throughput and window limits, the built-in simulator."""

from actors.carriers._connector import (
    Accepted,
    CarrierDown,
    CarrierError,
    Connector,
    ConnectorFactory,
    DeliveryEvent,
    DeliveryStatus,
    Event,
    EventSink,
    Health,
    InboundEvent,
    PermanentError,
    RetryableError,
    Submission,
    Throttled,
)
from actors.carriers._plugins import (
    GROUP,
    BrokenPlugin,
    PluginError,
    UnknownPlugin,
    available_plugins,
    load_connector,
)
from actors.carriers._simulator import SimulatorConnector, SimulatorOptions
from actors.carriers._throttle import CarrierLink, LinkStatistics, TokenBucket, Window

__all__ = [
    "GROUP",
    "Accepted",
    "BrokenPlugin",
    "CarrierDown",
    "CarrierError",
    "CarrierLink",
    "Connector",
    "ConnectorFactory",
    "DeliveryEvent",
    "DeliveryStatus",
    "Event",
    "EventSink",
    "Health",
    "InboundEvent",
    "LinkStatistics",
    "PermanentError",
    "PluginError",
    "RetryableError",
    "SimulatorConnector",
    "SimulatorOptions",
    "Submission",
    "Throttled",
    "TokenBucket",
    "UnknownPlugin",
    "Window",
    "available_plugins",
    "load_connector",
]
