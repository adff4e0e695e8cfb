"""Supervision trees of trio actors: OTP strategies, restart intensity, backoff, snapshots."""

from supervisor._backoff import Backoff
from supervisor._broker_children import BrokerChild, TransportSource, consumer, service
from supervisor._children import (
    ActorChild,
    EntitiesChild,
    PoolChild,
    PoolRef,
    actor,
    entities,
    pool,
    supervisor,
)
from supervisor._errors import (
    ChildStartError,
    InvalidChildSpec,
    RestartIntensityError,
    SupervisorError,
    UnknownChildError,
)
from supervisor._partition_children import PartitionedChild, partitioned
from supervisor._root import ExitStatus, chain_text, open_supervisor, run_root
from supervisor._snapshot import Failure, NodeSnapshot, decode, encode, render
from supervisor._spec import ChildSpec, Restart, Strategy, SupervisorSpec, validate
from supervisor._supervisor import Supervisor, SupervisorStatistics

__rabbitry__ = True  # lets `rabbitry` tell this package from the Supervisor process manager

__all__ = [
    "ActorChild",
    "Backoff",
    "BrokerChild",
    "ChildSpec",
    "ChildStartError",
    "EntitiesChild",
    "ExitStatus",
    "Failure",
    "InvalidChildSpec",
    "NodeSnapshot",
    "PartitionedChild",
    "PoolChild",
    "PoolRef",
    "Restart",
    "RestartIntensityError",
    "Strategy",
    "Supervisor",
    "SupervisorError",
    "SupervisorSpec",
    "SupervisorStatistics",
    "TransportSource",
    "UnknownChildError",
    "actor",
    "chain_text",
    "consumer",
    "decode",
    "encode",
    "entities",
    "open_supervisor",
    "partitioned",
    "pool",
    "render",
    "run_root",
    "service",
    "supervisor",
    "validate",
]
