"""The platform's wire messages: what travels through RabbitMQ between its actors.

Every message is a frozen msgspec Struct registered with the platform's codec under its tag.
Batched messages (`SendBatch`, `Outcomes`, `Reports`) carry many SMS in one broker message, each
item still tracked, retried and charged on its own (by its message id): that is what keeps
RabbitMQ's per-message cost off the per-SMS path. New fields always get a default.

The flow (see rabbitry.platform's docstring):

    gateway --HoldFunds (RPC)--> account           (one hold for the whole request)
    gateway --SendBatch--> carrier.<name>          (queue per carrier, items of one account)
    carrier --Outcomes--> account                  (captures for accepted, releases for rejected)
    carrier --SettledQuery (RPC)--> account        (a redelivered batch: what is settled already?)
    carrier --Reports--> sms.reports               (delivery reports -> status, callbacks)
    carrier --InboundSms--> sms.inbound            (-> owner account's records and webhook)
    status  --Callback--> sms.callbacks            (POSTed to the customer, retried by tiers)
"""

import hashlib
import uuid
from decimal import Decimal
from typing import Literal

import msgspec

from rabbitry.billing import Encoding

FINAL_STATUSES: frozenset[str] = frozenset({"delivered", "undelivered", "failed"})
"""The statuses (of `rabbitry.gateway.MessageStatus`) after which a message changes no more."""


def send_message_id(request_id: str, index: int) -> str:
    """The id of the `index`-th recipient of a send request: derived, so a retried request (same
    Idempotency-Key, same request id) names the same messages."""
    return f"msg_{request_id[:20]}_{index}"


def send_hold_id(request_id: str) -> str:
    """The ledger hold (and its operation id) of a send request."""
    return f"hold-{request_id}"


def inbound_id(carrier: str, carrier_id: str) -> str:
    """The id of the inbound SMS `carrier` knows as `carrier_id`: derived, so the same SMS sent
    again by the carrier (to any daemon, before or after a restart) is recorded once; a random
    one when the carrier gives no id."""
    if not carrier_id:
        return f"in-{uuid.uuid4().hex}"
    digest = hashlib.sha256(f"{carrier}\n{carrier_id}".encode()).hexdigest()
    return f"in-{digest[:32]}"


def without_nul(text: str) -> str:
    """`text` as the platform keeps what a carrier sends: a NUL becomes U+FFFD (PostgreSQL cannot
    store a NUL in text, and a carrier's SMS or report would be retried, then parked)."""
    return text.replace("\x00", "\ufffd")


def send_request_of(hold: str) -> str | None:
    """The send request a hold id was made for, or None for another kind of hold."""
    return hold.removeprefix("hold-") if hold.startswith("hold-") else None


class SendItem(msgspec.Struct, frozen=True, kw_only=True):
    """One SMS to one destination, priced and routed by the gateway."""

    id: str
    to: str
    sender: str
    text: str
    segments: int
    encoding: Encoding
    price: Decimal
    prefix: str  # the rate-card prefix that priced it ("" for the default rate)
    carriers: tuple[str, ...]  # the route: failover order; items[0] is tried first
    callback_url: str = ""
    client_ref: str = ""


class SendBatch(msgspec.Struct, frozen=True, kw_only=True, tag="sms.SendBatch"):
    """SMS of one account and one hold, for one carrier (the first of each item's route that
    has not failed it yet); the envelope's `attempt` counts the batch's trips through the retry
    tiers."""

    account: str
    hold: str
    currency: str
    items: tuple[SendItem, ...]
    abandon_at: float = 0.0
    """Wall time from which the send's reaper may give this batch up (rabbitry.platform._outbox):
    a carrier handling it that late asks the account which items are settled first."""
    retried_as: int = 0
    """The attempt its carrier's own retry published it for (the carrier did not take its items
    the attempt before); a batch in a later attempt came back because its handling failed, and
    the carrier reads what the attempts since handed over before it sends anything again."""


class HoldFunds(msgspec.Struct, frozen=True, kw_only=True, tag="sms.HoldFunds"):
    """RPC to an account: hold `amount` under `hold`; answered by the Receipt or a failure."""

    account: str
    hold: str
    amount: Decimal
    currency: str
    operation: str  # the ledger operation id (apply-once)


class Fund(msgspec.Struct, frozen=True, kw_only=True, tag="sms.Fund"):
    """RPC to an account: add paid money (`bonus=False`) or bonus credit, once per operation id."""

    account: str
    amount: Decimal
    currency: str
    operation: str
    bonus: bool = False
    reference: str = ""


class ReleaseHold(msgspec.Struct, frozen=True, kw_only=True, tag="sms.ReleaseHold"):
    """To an account: give back all that `hold` still holds (once per operation id)."""

    account: str
    hold: str
    operation: str


class OpenAccountCommand(msgspec.Struct, frozen=True, kw_only=True, tag="sms.OpenAccount"):
    """RPC to an account: open it in `currency` (idempotent on `operation`)."""

    account: str
    currency: str
    operation: str


class SettledQuery(msgspec.Struct, frozen=True, kw_only=True, tag="sms.SettledQuery"):
    """RPC to an account: which of `messages` have their outcome settled (captured or released)?
    Answered by `Settled`."""

    account: str
    messages: tuple[str, ...]


class Settled(msgspec.Struct, frozen=True, kw_only=True, tag="sms.Settled"):
    """The answer to a `SettledQuery`: the messages whose capture or release the ledger holds."""

    messages: tuple[str, ...]


AccountRequest = OpenAccountCommand | Fund | HoldFunds
"""The RPCs an account actor answers with a ledger receipt."""


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """What a carrier did with one SMS: accepted (capture) or failed for good (release)."""

    id: str
    status: Literal["sent", "failed"]
    carrier: str
    price: Decimal
    segments: int
    prefix: str
    carrier_ids: tuple[str, ...] = ()  # one per part
    error: str = ""
    callback_url: str = ""
    client_ref: str = ""
    at: float = 0.0  # wall time (time.time())


class Outcomes(msgspec.Struct, frozen=True, kw_only=True, tag="sms.Outcomes"):
    """Outcomes of one account's hold, settled by its account actor in one ledger transaction."""

    account: str
    hold: str
    currency: str
    items: tuple[Outcome, ...]
    unless_settled: bool = False
    """A send given up (rabbitry.platform._outbox): only the items no carrier settled yet."""


class Report(msgspec.Struct, frozen=True, kw_only=True):
    """A delivery report for one SMS: `id` is ours when the carrier side could match it, else ""
    and `carrier_id` is the carrier's (the reports consumer then looks it up)."""

    id: str
    status: Literal["sent", "delivered", "undelivered", "failed"]
    carrier: str
    error: str = ""
    at: float = 0.0
    carrier_id: str = ""


class Reports(msgspec.Struct, frozen=True, kw_only=True, tag="sms.Reports"):
    items: tuple[Report, ...]


class InboundSms(msgspec.Struct, frozen=True, kw_only=True, tag="sms.Inbound"):
    """An SMS a carrier received for one of our numbers (`to`)."""

    id: str
    sender: str
    to: str
    text: str
    carrier: str
    at: float = 0.0


class Callback(msgspec.Struct, frozen=True, kw_only=True, tag="sms.Callback"):
    """A JSON body to POST to a customer's URL (a status callback or an inbound webhook)."""

    id: str  # the event id, sent as the X-Rabbitry-Event header so the receiver deduplicates
    url: str
    body: bytes
    account: str = ""


class InvoiceJob(msgspec.Struct, frozen=True, kw_only=True, tag="sms.InvoiceJob"):
    """Build (or rebuild from the stored document) the invoice `invoice` of an account's period."""

    account: str
    period: str
    invoice: str


class LinkToken(msgspec.Struct, frozen=True, kw_only=True, tag="sms.LinkToken"):
    """The lease of link `index` of carrier `carrier`: whoever holds it unacked runs that link
    (rabbitry.platform._carrier_links)."""

    carrier: str
    index: int
    by: str = ""
    """The daemon that published it (for the logs)."""


MESSAGE_TYPES: tuple[type, ...] = (
    Callback,
    Fund,
    HoldFunds,
    InboundSms,
    InvoiceJob,
    LinkToken,
    OpenAccountCommand,
    Outcomes,
    ReleaseHold,
    Reports,
    SendBatch,
    Settled,
    SettledQuery,
)
