"""The SMS platform: accounts, carriers, delivery reports, inbound SMS, callbacks and invoices,
as actors exchanging messages through RabbitMQ (see rabbitry.platform._messages for the flow)."""

from rabbitry.platform._account import AccountActor, account_of, partition_fences
from rabbitry.platform._account_client import ACCOUNT_ERRORS, AccountClient
from rabbitry.platform._async_records import AsyncRecords
from rabbitry.platform._backend import PlatformBackend
from rabbitry.platform._batcher import Batcher
from rabbitry.platform._callbacks import CallbackActor, CallbackFailed, CallbackRefused
from rabbitry.platform._carrier import CarrierActor, CarrierSide
from rabbitry.platform._carrier_links import LeaseLost, LinkHandle, LinkSlot, run_link
from rabbitry.platform._carrier_marks import reported_final, run_carrier_ids_cleanup
from rabbitry.platform._context import Context, Services
from rabbitry.platform._idempotency import (
    IDEMPOTENCY_TTL,
    forget_expired,
    run_idempotency_cleanup,
)
from rabbitry.platform._invoices import (
    InvoiceJobActor,
    InvoicesActor,
    check_closed,
    request_invoice,
)
from rabbitry.platform._layout import Names, platform_codec, platform_topology
from rabbitry.platform._link_fleet import LinkFleet
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
from rabbitry.platform._outbox import AsyncOutbox
from rabbitry.platform._publisher import Publisher
from rabbitry.platform._reaper import reap_once, recover_once, release_unknown_once, run_reaper
from rabbitry.platform._records import hash_key
from rabbitry.platform._records_sql import SqlRecords
from rabbitry.platform._records_store import RecordsStore
from rabbitry.platform._send import BATCH_SIZE, Outgoing, Pricing, Sender, Sent
from rabbitry.platform._status import (
    InboundActor,
    ReportsActor,
    UnknownNumber,
    UnmatchedReport,
    inject_inbound,
)
from rabbitry.platform._webhook_client import open_webhook_client
from rabbitry.platform._webhook_secrets import (
    SIGNATURE_HEADER,
    SIGNING_KEY_NAME,
    WebhookSecrets,
    signature,
)

__all__ = [
    "ACCOUNT_ERRORS",
    "BATCH_SIZE",
    "FINAL_STATUSES",
    "IDEMPOTENCY_TTL",
    "SIGNATURE_HEADER",
    "SIGNING_KEY_NAME",
    "AccountActor",
    "AccountClient",
    "AsyncOutbox",
    "AsyncRecords",
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
    "LeaseLost",
    "LinkFleet",
    "LinkHandle",
    "LinkSlot",
    "Names",
    "OpenAccountCommand",
    "Outcome",
    "Outcomes",
    "Outgoing",
    "PlatformBackend",
    "PostgresRecords",
    "Pricing",
    "Publisher",
    "Records",
    "RecordsStore",
    "ReleaseHold",
    "Report",
    "Reports",
    "ReportsActor",
    "SendBatch",
    "SendItem",
    "Sender",
    "Sent",
    "Services",
    "SqlRecords",
    "UnknownNumber",
    "UnmatchedReport",
    "WebhookSecrets",
    "account_of",
    "check_closed",
    "forget_expired",
    "hash_key",
    "inject_inbound",
    "open_records",
    "open_webhook_client",
    "partition_fences",
    "platform_codec",
    "platform_topology",
    "reap_once",
    "recover_once",
    "release_unknown_once",
    "reported_final",
    "request_invoice",
    "run_carrier_ids_cleanup",
    "run_idempotency_cleanup",
    "run_link",
    "run_reaper",
    "signature",
]
