"""The platform's HTTP front door: an ASGI app over a `GatewayBackend` (and, for operators, an
`OpsBackend`: the /v1/admin operations API, /metrics and the web console), served by hypercorn."""

from actors.gateway._app import MAX_BODY_SIZE, GatewayApp
from actors.gateway._backend import AccountInfo, ApiError, GatewayBackend, StoredResponse
from actors.gateway._bodies import MAX_RECIPIENTS, InvalidBody, SendRequest
from actors.gateway._ops import OpsBackend, ParkedQuery
from actors.gateway._serve import serve_gateway

__all__ = [
    "MAX_BODY_SIZE",
    "MAX_RECIPIENTS",
    "AccountInfo",
    "ApiError",
    "GatewayApp",
    "GatewayBackend",
    "InvalidBody",
    "OpsBackend",
    "ParkedQuery",
    "SendRequest",
    "StoredResponse",
    "serve_gateway",
]
