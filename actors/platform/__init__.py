"""The SMS platform: accounts, carriers, delivery reports, inbound SMS, callbacks and invoices,
as actors exchanging messages through RabbitMQ (see actors.platform._messages for the flow)."""

from actors.platform._account import AccountActor, account_of
from actors.platform._backend import PlatformBackend
from actors.platform._batcher import Batcher
from actors.platform._callbacks import CallbackActor, CallbackFailed, CallbackRefused
from actors.platform._carrier import CarrierActor, CarrierSide
from actors.platform._context import (
    Context,
    Names,
    Services,
    platform_codec,
    platform_topology,
)
from actors.platform._invoices import InvoiceJobActor, InvoicesActor
from actors.platform._messages import (
    FINAL_STATUSES,
    Callback,
    Fund,
    HoldFunds,
    InboundSms,
    InvoiceJob,
    OpenAccountCommand,
    Outcome,
    Outcomes,
    ReleaseHold,
    Report,
    Reports,
    SendBatch,
    SendItem,
)
from actors.platform._open_records import open_records
from actors.platform._reaper import reap_once, run_reaper
from actors.platform._records import Records, hash_key
from actors.platform._records_pg import PostgresRecords
from actors.platform._records_store import RecordsStore
from actors.platform._status import InboundActor, ReportsActor, UnknownNumber, UnmatchedReport

__all__ = [
    "FINAL_STATUSES",
    "AccountActor",
    "Batcher",
    "Callback",
    "CallbackActor",
    "CallbackFailed",
    "CallbackRefused",
    "CarrierActor",
    "CarrierSide",
    "Context",
    "Fund",
    "HoldFunds",
    "InboundActor",
    "InboundSms",
    "InvoiceJob",
    "InvoiceJobActor",
    "InvoicesActor",
    "Names",
    "OpenAccountCommand",
    "Outcome",
    "Outcomes",
    "PlatformBackend",
    "PostgresRecords",
    "Records",
    "RecordsStore",
    "ReleaseHold",
    "Report",
    "Reports",
    "ReportsActor",
    "SendBatch",
    "SendItem",
    "Services",
    "UnknownNumber",
    "UnmatchedReport",
    "account_of",
    "hash_key",
    "open_records",
    "platform_codec",
    "platform_topology",
    "reap_once",
    "run_reaper",
]
