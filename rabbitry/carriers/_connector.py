"""The carrier connector plugin API: what a connection to one downstream carrier looks like.

A connector is a plugin (entry point group `rabbitry.carriers`, see `rabbitry.carriers._plugins`):
a factory `(name, options) -> Connector`, called with the `[[carriers]]` table's `name` and its
free-form `options`. A minimal one, which accepts everything and reports it delivered:

    import itertools
    import math
    from collections.abc import Mapping

    import trio

    from rabbitry.carriers import (
        Accepted, CarrierDown, DeliveryEvent, EventSink, Health, Submission,
    )

    class EchoConnector:
        def __init__(self, name: str, options: Mapping[str, object]) -> None:
            self.name = name
            self._ids = itertools.count(1)
            self._send, self._receive = trio.open_memory_channel[DeliveryEvent](math.inf)
            self._bound = False

        async def run(self, events: EventSink, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
            self._bound = True              # a real connector connects and binds first
            task_status.started()
            try:
                async for event in self._receive:
                    await events(event)     # returns once stored: only now ack to the carrier
            finally:
                self._bound = False

        async def submit(self, submission: Submission) -> Accepted:
            if not self._bound:
                raise CarrierDown(f"carrier {self.name!r} is not connected")
            ids = tuple(f"{self.name}-{next(self._ids)}" for _ in submission.parts)
            self._send.send_nowait(DeliveryEvent(ids[0], "delivered"))
            return Accepted(ids)

        def health(self) -> Health:
            return "bound" if self._bound else "down"

    # pyproject.toml of the plugin's distribution:
    # [project.entry-points."rabbitry.carriers"]
    # echo = "my_package:EchoConnector"

The contract:

- `run(events)` connects, calls `task_status.started()` once the connection is usable, then
  stays up, pushing what the carrier sends (`DeliveryEvent`, `InboundEvent`) through
  `await events(event)`. That await returns only once the event is safely stored, so a
  connector acknowledges to its carrier after it (and a carrier resends what was not acked). It
  returns when cancelled; raising means the connection failed, and the supervisor restarts it.
- `submit(submission)` sends one SMS (all its parts) and returns the carrier's ids, one per
  part, or raises one of the `CarrierError`s below. It is called from many tasks at once (up to
  the carrier's window) and never before `run` has called `started()`.
- `health()` is cheap and synchronous: "bound" (usable), "degraded" (usable but failing or
  throttled), "down" (not connected: the platform fails over to the next carrier).
- `drain()` (optional): on a graceful stop, after the last `submit` returned and before `run`
  is cancelled, the platform awaits it (bounded by the drain timeout) so that the connector can
  hand over what it holds in memory; the simulator pushes its pending delivery reports. A
  connector whose carrier keeps undelivered reports itself (an SMSC resends them on the next
  bind) needs none.

Options come from the config; values of keys ending in password, secret, token, key,
passphrase or credentials (and every value read from the environment) are `conf.Secret`s:
call `.reveal()` where the value leaves, and never log it. A factory validates its options and
raises `ValueError` naming the option and the value.

What each error tells the platform: `Throttled` backs off (not a failure), `RetryableError`
retries later (possibly on another carrier), `PermanentError` fails the message for good (its
price is refunded), `CarrierDown` fails over to the next carrier of the route.
"""

from collections.abc import Awaitable, Callable, Mapping
from typing import Literal, Protocol

import attrs
import trio

from rabbitry.billing import segment

Health = Literal["bound", "degraded", "down"]
"""A connector's state: usable, usable but failing or throttled, not connected."""

DeliveryStatus = Literal["sent", "delivered", "undelivered", "failed"]
"""What a delivery report says; all but "sent" are final (see sms-domain.md 1.3)."""


@attrs.frozen
class Submission:
    """One SMS to send: `parts` are the texts of its segments (`rabbitry.billing.segment`), in
    order.

        `message_id` is the platform's id (not the carrier's); `Submission.of` fills the encoding
        and the parts from the text.
    """

    message_id: str
    to: str
    sender: str
    text: str
    encoding: Literal["gsm7", "ucs2"]
    segments: int
    parts: tuple[str, ...]

    def __attrs_post_init__(self) -> None:
        if self.segments < 1 or len(self.parts) != self.segments:
            raise ValueError(
                f"Submission {self.message_id!r} must have segments >= 1 and one part per"
                f" segment (got segments={self.segments!r} and {len(self.parts)} parts)"
            )

    @classmethod
    def of(cls, message_id: str, to: str, sender: str, text: str) -> "Submission":
        """The submission of `text`, measured and cut by `rabbitry.billing.segment`."""
        split = segment(text)
        encoding: Literal["gsm7", "ucs2"] = "gsm7" if split.encoding.value == "gsm7" else "ucs2"
        return cls(message_id, to, sender, text, encoding, split.segments, split.parts)


@attrs.frozen
class Accepted:
    """The carrier took a submission: its ids, one per part (the keys its reports come back on)."""

    carrier_ids: tuple[str, ...]


@attrs.frozen
class DeliveryEvent:
    """A delivery report from the carrier for the part it knows as `carrier_id`.

    `error` is the carrier's raw error code ("" when there is none).
    """

    carrier_id: str
    status: DeliveryStatus
    error: str = ""


@attrs.frozen
class InboundEvent:
    """An SMS the carrier received from `sender` for one of our numbers (`to`).

    `carrier_id` is the carrier's own id of the SMS ("" when it gives none): the platform takes
    an SMS once per carrier and id, so a carrier that sends it again (a lost acknowledgement, a
    replayed webhook) does not make a second one.
    """

    sender: str
    to: str
    text: str
    carrier_id: str = ""


Event = DeliveryEvent | InboundEvent

EventSink = Callable[[DeliveryEvent | InboundEvent], Awaitable[None]]
"""Where a connector pushes events; the await returns once the event is safely stored."""


class CarrierError(Exception):
    """Base of what `Connector.submit` raises; `code` is the carrier's error code, as a string.

    A connector passes the carrier's own code (`code="0x00000058"`, `code="30003"`) when there is
    one; each subclass has a default.
    """

    code: str = "error"

    def __init__(self, message: str = "", *, code: str | None = None) -> None:
        super().__init__(message or type(self).__name__)
        if code is not None:
            self.code = code


class Throttled(CarrierError):  # noqa: N818 - the names of the public contract
    """The carrier asks to slow down: wait `retry_after` seconds, then resend. Not a failure."""

    code = "throttled"

    def __init__(
        self, message: str = "", *, retry_after: float = 1.0, code: str | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class RetryableError(CarrierError):
    """A temporary failure: the same SMS may succeed later (after `retry_after` seconds if set)."""

    code = "temporary"

    def __init__(
        self, message: str = "", *, retry_after: float | None = None, code: str | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class PermanentError(CarrierError):
    """The carrier refused the SMS for good (e.g. an invalid destination): it is refunded."""

    code = "rejected"


class CarrierDown(CarrierError, ConnectionError):  # noqa: N818 - the names of the public contract
    """The connector is not connected: the platform fails over to the route's next carrier."""

    code = "down"


class AuthenticationFailed(CarrierDown):
    """The carrier refused our credentials (a refused bind, an HTTP 401/403).

    Reconnecting at once will not help, and carriers block addresses that keep trying: the
    carrier actor waits longer after each of these (30 s, 60 s, ... up to 10 min) before the
    connection is tried again, while the route fails over.
    """

    code = "auth"


class Connector(Protocol):
    """A connection to one carrier; see the module docstring for the contract."""

    name: str

    async def run(
        self, events: EventSink, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Connects, calls `task_status.started()` once usable, pushes events until cancelled."""
        ...

    async def submit(self, submission: Submission) -> Accepted:
        """Sends one SMS; returns one carrier id per part, or raises a `CarrierError`."""
        ...

    def health(self) -> Health:
        """The connection's state (`Health`); cheap, no I/O."""
        ...


ConnectorFactory = Callable[[str, Mapping[str, object]], Connector]
"""A plugin's entry point: `(name, options) -> Connector`; a connector class is one."""
