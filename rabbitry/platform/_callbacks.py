"""Customer callbacks: status changes and inbound SMS POSTed to the customer's URL, with retries.

    changed = records.apply_statuses(changes)
    await publish_callbacks(publisher, names, status_callbacks(changed))   # on sms.callbacks
    ...
    CallbackActor(client, secrets)   # consumes sms.callbacks: POST, raise on failure -> retry

Each callback is a JSON body with an event id (`<message id>:<status>`, or the inbound id), sent
as the `X-Rabbitry-Event` header so a receiver deduplicates the redeliveries that at-least-once
delivery implies, and signed with its account's webhook secret at the moment it is sent
(`Rabbitry-Signature: t=...,v1=...`, rabbitry.platform._webhook_secrets). The client is the
webhook client (rabbitry.platform._webhook_client): it connects only to addresses it checked,
follows no redirect.

A receiver that answers 2xx is done. A callback that cannot be sent for any reason (an error
status, a redirect, a refused connection, a timeout, a host that is or now resolves to a private
address, a URL that breaks the rules of customers' URLs, perhaps kept from before they were
checked, the records out of reach to sign it) raises
`CallbackFailed`, which the platform's failure policy sends through the retry tiers (1 s, 5 s, ...
by config) and finally to the parking lot, logged, where an operator can replay it: one bad
callback is a failed attempt of that callback, never a crash of the worker, so another customer's
callbacks wait for nothing. A 4xx other than 408 and 429 is permanent (`CallbackRefused`, parked
at once): the receiver will not change its mind.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
import msgspec
import trio

from actors import ConsumerActor
from conf import mask_url
from rabbitry.platform._context import Services
from rabbitry.platform._customer_urls import parse_customer_url
from rabbitry.platform._layout import Names
from rabbitry.platform._messages import Callback
from rabbitry.platform._publisher import Publisher
from rabbitry.platform._records import Changed, InboundRecord
from rabbitry.platform._webhook_secrets import SIGNATURE_HEADER, WebhookSecrets, signature

_log = logging.getLogger("rabbitry.platform.callbacks")
_encoder = msgspec.json.Encoder(decimal_format="string")


class CallbackFailed(Exception):  # noqa: N818  (names what happened, like ActorCrashed)
    """The receiver did not take the callback; retried later."""


class CallbackRefused(Exception):  # noqa: N818  (names what happened)
    """The receiver refused the callback for good (a 4xx); parked."""


def status_callbacks(changed: list[Changed]) -> list[Callback]:
    """One callback per status change of a message that has a callback_url."""
    callbacks = []
    for change in changed:
        message, event = change.message, change.event
        if not message.callback_url:
            continue
        body = {
            "id": message.id,
            "to": message.to,
            "status": event.status,
            "segments": message.segments,
            "price": message.price,
            "carrier": event.carrier or message.carrier,
            "error": event.error or None,
            "client_ref": message.client_ref or None,
            "at": event.at,
        }
        callbacks.append(
            Callback(
                id=f"{message.id}:{event.status}",
                url=message.callback_url,
                body=_encoder.encode(body),
                account=message.account,
            )
        )
    return callbacks


def inbound_callback(record: InboundRecord, url: str) -> Callback:
    body = {
        "id": record.id,
        "from": record.sender,
        "to": record.to,
        "text": record.text,
        "carrier": record.carrier,
        "received_at": record.received_at,
    }
    return Callback(id=record.id, url=url, body=_encoder.encode(body), account=record.account)


async def publish_callbacks(publisher: Publisher, names: Names, callbacks: list[Callback]) -> None:
    """Queues callbacks on sms.callbacks, confirmed, many in flight."""
    if not callbacks:
        return
    async with trio.open_nursery() as nursery:
        for callback in callbacks:
            nursery.start_soon(
                functools.partial(
                    publisher.publish,
                    callback,
                    routing_key=names.callbacks_key,
                    message_id=callback.id,
                )
            )


class CallbackActor(ConsumerActor):
    """POSTs each callback, signed; raises so the retry tiers take a failed one.

    `client` is the webhook client (`Services.webhooks`), `secrets` the accounts' webhook secrets,
    `clock` the time the signatures carry (Unix seconds).
    """

    __slots__ = ("client", "clock", "secrets")

    def __init__(
        self,
        client: httpx.AsyncClient,
        secrets: WebhookSecrets,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.secrets = secrets
        self.clock = clock

    @classmethod
    def from_platform(cls, services: Services) -> CallbackActor:
        return cls(services.webhooks, services.context.webhook_secrets)

    async def handle(self, message: Any) -> None:
        if not isinstance(message, Callback):
            raise TypeError(f"the callback queue got a {type(message).__name__}")
        where = _shown(message.url)
        try:
            parse_customer_url("the URL", message.url)  # as when it was given: it may predate that
            secret = await self.secrets.secret(message.account)
            signed = signature(secret, message.body, at=int(self.clock()))
            response = await self.client.post(
                message.url,
                content=message.body,
                headers={
                    "content-type": "application/json",
                    "x-rabbitry-event": message.id,
                    SIGNATURE_HEADER: signed,
                },
            )
        except Exception as error:  # noqa: BLE001 - whatever it is, this callback failed
            reason = f"{type(error).__name__}: {error}"
            raise CallbackFailed(f"POST to {where} failed ({reason})") from None
        if response.is_success:
            return
        status = response.status_code
        text = f"POST to {where} answered {status}"
        if response.is_redirect:
            raise CallbackFailed(f"{text} (redirects are not followed)")
        if 400 <= status < 500 and status not in (408, 429):
            raise CallbackRefused(text)
        raise CallbackFailed(text)


def _shown(url: str) -> str:
    """The URL as logs show it: without its query (which may hold a token) or its user and
    password, quoted (it may hold control characters), at most 200 characters."""
    shown = mask_url(url.split("?", 1)[0])
    return repr(shown if len(shown) <= 200 else shown[:200] + "...")
