"""Actors: trio tasks with bounded mailboxes that exchange messages (tell and ask)."""

from actors._actor import Actor
from actors._consumer import (
    ConsumerActor,
    ConsumerHandle,
    ConsumerStatistics,
    Inbound,
    Target,
    current_inbound,
    inbound_or_none,
    run_consumer,
)
from actors._entities import Entities, EntitiesStatistics
from actors._errors import (
    ActorCrashed,
    ActorError,
    ActorStopped,
    AlreadyRegistered,
    AlreadyRunning,
    AskTimeout,
    EntitiesFailed,
    InvalidEntities,
    InvalidMailbox,
    InvalidTimeout,
    MailboxFull,
    NotRegistered,
    OwnershipLost,
)
from actors._incarnation import open_actor, run_actor
from actors._mailbox import Mailbox, MailboxStatistics
from actors._membership import Fleet, MemberHeartbeat, Membership, run_membership
from actors._metrics import (
    Histogram,
    all_counters,
    all_handler_metrics,
    all_histograms,
    count,
    histogram,
)
from actors._partitioned import (
    KeyOf,
    MisroutedMessage,
    OnOwner,
    PartitionedHandle,
    live_partitioned,
    run_partitioned,
)
from actors._ref import ActorRef
from actors._registry import Registry
from actors._service import run_service
from actors._settings import (
    DEFAULT_ASK_TIMEOUT,
    DEFAULT_MAILBOX_CAPACITY,
    ConsumerSettings,
    EntitiesSettings,
)
from actors._window import RestartWindow

__all__ = [
    "DEFAULT_ASK_TIMEOUT",
    "DEFAULT_MAILBOX_CAPACITY",
    "Actor",
    "ActorCrashed",
    "ActorError",
    "ActorRef",
    "ActorStopped",
    "AlreadyRegistered",
    "AlreadyRunning",
    "AskTimeout",
    "ConsumerActor",
    "ConsumerHandle",
    "ConsumerSettings",
    "ConsumerStatistics",
    "Entities",
    "EntitiesFailed",
    "EntitiesSettings",
    "EntitiesStatistics",
    "Fleet",
    "Histogram",
    "Inbound",
    "InvalidEntities",
    "InvalidMailbox",
    "InvalidTimeout",
    "KeyOf",
    "Mailbox",
    "MailboxFull",
    "MailboxStatistics",
    "MemberHeartbeat",
    "Membership",
    "MisroutedMessage",
    "NotRegistered",
    "OnOwner",
    "OwnershipLost",
    "PartitionedHandle",
    "Registry",
    "RestartWindow",
    "Target",
    "all_counters",
    "all_handler_metrics",
    "all_histograms",
    "count",
    "current_inbound",
    "histogram",
    "inbound_or_none",
    "live_partitioned",
    "open_actor",
    "run_actor",
    "run_consumer",
    "run_membership",
    "run_partitioned",
    "run_service",
]
