"""The platform's HTTP front door: an ASGI app over a `GatewayBackend` (and, for operators, an
`OpsBackend`: the /v1/admin operations API, /metrics and the web console), served by hypercorn."""

from rabbitry.gateway._app import MAX_BODY_SIZE, GatewayApp
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
from rabbitry.gateway._serve import serve_gateway

__all__ = [
    "MAX_BODY_SIZE",
    "MAX_RECIPIENTS",
    "STATUSES",
    "AccountInfo",
    "ApiError",
    "GatewayApp",
    "GatewayBackend",
    "InvalidBody",
    "InvalidField",
    "InvalidJson",
    "NotFound",
    "NumberTaken",
    "OpsBackend",
    "ParkedQuery",
    "Refusal",
    "SendRequest",
    "StoredResponse",
    "Unauthorized",
    "Unavailable",
    "Unsupported",
    "refusal_of",
    "serve_gateway",
]
