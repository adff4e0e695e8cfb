"""A user's own actors, run by the daemon from `[[pools]]` lines alone (no change to Rabbitry)."""

import os
from pathlib import Path
from typing import Any

import msgspec

from actors import ConsumerActor


class Greet(msgspec.Struct, frozen=True, tag="shop.Greet"):
    name: str


class Greeting(msgspec.Struct, frozen=True, tag="shop.Greeting"):
    text: str


class Audit(msgspec.Struct, frozen=True, tag="shop.Audit"):
    event: str


class Greeter(ConsumerActor):
    """An RPC service: answers each Greet."""

    message_types = (Greet, Greeting)

    async def handle(self, message: Any) -> Greeting:
        return Greeting(text=f"hello {message.name}")


class Auditor(ConsumerActor):
    """A fire-and-forget worker: appends each event to $SHOP_AUDIT_FILE."""

    message_types = (Audit,)

    async def handle(self, message: Any) -> None:
        with Path(os.environ["SHOP_AUDIT_FILE"]).open("a") as file:  # noqa: ASYNC230
            file.write(f"{message.event}\n")
