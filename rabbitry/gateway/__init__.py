"""The platform's HTTP front door: an ASGI app over a `GatewayBackend` (and, for operators, an
`OpsBackend`: the /v1/admin operations API, /metrics and the web console), served by hypercorn."""

from rabbitry.gateway._answers import (
    AccountCreated,
    BalanceView,
    EventView,
    InboundList,
    InboundView,
    InvoiceDocument,
    InvoiceState,
    InvoiceStatus,
    MessageStatus,
    MessageView,
    QueuedMessage,
    SendAnswer,
    WebhookAnswer,
)
from rabbitry.gateway._app import MAX_BODY_SIZE, READ_TIMEOUT, GatewayApp
from rabbitry.gateway._backend import AccountInfo, GatewayBackend, StoredResponse
from rabbitry.gateway._bodies import MAX_RECIPIENTS, InvalidBody, SendRequest
from rabbitry.gateway._errors import (
    STATUSES,
    ApiError,
    InvalidField,
    InvalidJson,
    NotFound,
    NumberTaken,
    Refusal,
    Unauthorized,
    Unavailable,
    Unsupported,
    refusal_of,
)
from rabbitry.gateway._ops import OpsBackend, ParkedQuery
from rabbitry.gateway._serve import MAX_CONNECTIONS, serve_gateway

__all__ = [
    "MAX_BODY_SIZE",
    "MAX_CONNECTIONS",
    "MAX_RECIPIENTS",
    "READ_TIMEOUT",
    "STATUSES",
    "AccountCreated",
    "AccountInfo",
    "ApiError",
    "BalanceView",
    "EventView",
    "GatewayApp",
    "GatewayBackend",
    "InboundList",
    "InboundView",
    "InvalidBody",
    "InvalidField",
    "InvalidJson",
    "InvoiceDocument",
    "InvoiceState",
    "InvoiceStatus",
    "MessageStatus",
    "MessageView",
    "NotFound",
    "NumberTaken",
    "OpsBackend",
    "ParkedQuery",
    "QueuedMessage",
    "Refusal",
    "SendAnswer",
    "SendRequest",
    "StoredResponse",
    "Unauthorized",
    "Unavailable",
    "Unsupported",
    "WebhookAnswer",
    "refusal_of",
    "serve_gateway",
]
