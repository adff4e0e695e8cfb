"""Actors: trio tasks with bounded mailboxes that exchange messages (tell and ask)."""

from actors._actor import Actor
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
)
from actors._incarnation import open_actor, run_actor
from actors._mailbox import Mailbox, MailboxStatistics
from actors._ref import ActorRef
from actors._registry import Registry

__all__ = [
    "Actor",
    "ActorCrashed",
    "ActorError",
    "ActorRef",
    "ActorStopped",
    "AlreadyRegistered",
    "AlreadyRunning",
    "AskTimeout",
    "Entities",
    "EntitiesFailed",
    "EntitiesStatistics",
    "InvalidEntities",
    "InvalidMailbox",
    "InvalidTimeout",
    "Mailbox",
    "MailboxFull",
    "MailboxStatistics",
    "NotRegistered",
    "Registry",
    "open_actor",
    "run_actor",
]
