"""The SMS platform: accounts, carriers, delivery reports, inbound SMS, callbacks and invoices,
as actors exchanging messages through RabbitMQ (see rabbitry.platform._messages for the flow)."""

from rabbitry.platform._account import AccountActor, account_of
from rabbitry.platform._backend import PlatformBackend
from rabbitry.platform._batcher import Batcher
from rabbitry.platform._callbacks import CallbackActor, CallbackFailed, CallbackRefused
from rabbitry.platform._carrier import CarrierActor, CarrierSide
from rabbitry.platform._context import (
    Context,
    Names,
    Services,
    platform_codec,
    platform_topology,
)
from rabbitry.platform._invoices import InvoiceJobActor, InvoicesActor
from rabbitry.platform._messages import (
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
from rabbitry.platform._open_records import PostgresRecords, Records, open_records
from rabbitry.platform._reaper import reap_once, run_reaper
from rabbitry.platform._records import hash_key
from rabbitry.platform._records_sql import SqlRecords
from rabbitry.platform._records_store import RecordsStore
from rabbitry.platform._status import InboundActor, ReportsActor, UnknownNumber, UnmatchedReport

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
    "SqlRecords",
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
