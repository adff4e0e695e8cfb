"""The generic REST carrier connector (the `http` plugin): options, templates, webhooks."""

from rabbitry.carriers.http._connector import HttpConnector
from rabbitry.carriers.http._options import (
    DEFAULT_REQUEST,
    DEFAULT_STATUS_MAP,
    Auth,
    DlrMapping,
    HttpOptions,
    InboundMapping,
    ResponseMapping,
)
from rabbitry.carriers.http._template import PLACEHOLDERS, RequestTemplate, find, parse_path
from rabbitry.carriers.http._webhooks import (
    SIGNATURE_HEADER,
    TOLERANCE,
    InvalidWebhook,
    Signature,
    WebhookError,
    WebhookRefused,
    sign_webhook,
    verify_signature,
)

__all__ = [
    "DEFAULT_REQUEST",
    "DEFAULT_STATUS_MAP",
    "PLACEHOLDERS",
    "SIGNATURE_HEADER",
    "TOLERANCE",
    "Auth",
    "DlrMapping",
    "HttpConnector",
    "HttpOptions",
    "InboundMapping",
    "InvalidWebhook",
    "RequestTemplate",
    "ResponseMapping",
    "Signature",
    "WebhookError",
    "WebhookRefused",
    "find",
    "parse_path",
    "sign_webhook",
    "verify_signature",
]
