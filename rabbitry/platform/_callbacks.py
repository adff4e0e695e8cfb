"""Customer callbacks: status changes and inbound SMS POSTed to the customer's URL, with retries.

    changed = records.apply_statuses(changes)
    await publish_callbacks(publisher, names, status_callbacks(changed))   # on sms.callbacks
    ...
    CallbackActor(client)   # consumes sms.callbacks: POST, raise on failure -> retry tiers

Each callback is a JSON body with an event id (`<message id>:<status>`, or the inbound id), sent
as the `X-Rabbitry-Event` header so a receiver deduplicates the redeliveries that at-least-once
delivery implies. A receiver that answers 2xx is done; anything else (an error status, a refused
connection, a timeout) raises `CallbackFailed`, which the platform's failure policy sends through
the retry tiers (1 s, 5 s, ... by config) and finally to the parking lot, where an operator can
replay it. A 4xx other than 408 and 429 is permanent: the receiver will not change its mind.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import httpx
import msgspec
import trio

from actors import ConsumerActor
from rabbitry.platform._context import Services
from rabbitry.platform._layout import Names
from rabbitry.platform._messages import Callback
from rabbitry.platform._publisher import Publisher
from rabbitry.platform._records import Changed, InboundRecord

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
    """POSTs each callback; raises so the retry tiers take a failed one."""

    __slots__ = ("client",)

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    @classmethod
    def from_platform(cls, services: Services) -> CallbackActor:
        return cls(services.http)

    async def handle(self, message: Any) -> None:
        if not isinstance(message, Callback):
            raise TypeError(f"the callback queue got a {type(message).__name__}")
        try:
            response = await self.client.post(
                message.url,
                content=message.body,
                headers={"content-type": "application/json", "x-rabbitry-event": message.id},
            )
        except httpx.HTTPError as error:
            raise CallbackFailed(f"POST to {_origin(message.url)} failed: {error!r}") from None
        if response.is_success:
            return
        status = response.status_code
        text = f"POST to {_origin(message.url)} answered {status}"
        if 400 <= status < 500 and status not in (408, 429):
            raise CallbackRefused(text)
        raise CallbackFailed(text)


def _origin(url: str) -> str:
    """The URL without its query (which may hold a token)."""
    return url.split("?", 1)[0]
