"""The SMPP 3.4 connector: one bind (or a transmitter + receiver pair) to one carrier's SMSC.

    connector = SmppConnector("acme", {"host": "127.0.0.1", "port": 2775,
                                       "system_id": "rabbitry", "password": Secret("s3cret")})
    async with trio.open_nursery() as nursery:
        await nursery.start(connector.run, sink)     # connected and bound; raises BindRefused
        accepted = await connector.submit(Submission.of("m-1", "+33612345678", "Shop", text))
        accepted.carrier_ids                          # one normalised message_id per part
        # receipts arrive as sink(DeliveryEvent(carrier_id, status, error)), inbound SMS as
        # sink(InboundEvent(sender, to, text)); each is acknowledged once the sink returned

Declared as the `smpp` plugin (entry point group `rabbitry.carriers`); its options are
`rabbitry.carriers.smpp._options`.

Submitting: a GSM-7 text goes as data_coding 0 (unpacked septets), anything else as UCS-2
(data_coding 8, UTF-16-BE). A text of several parts (`Submission.parts`, cut by
`rabbitry.billing.segment`) goes as one submit_sm per part, each with esm_class 0x40 and the user
data header `05 00 03 ref total seq` (an 8-bit reference counting up per message); all parts are
queued at once, in order, and each gets its own message_id. The answers map to the plugin API's
errors:

- ESME_ROK -> the message_id, normalised as `submit_id_format` says;
- ESME_RTHROTTLED -> `Throttled(retry_after=throttle_delay)`, ESME_RMSGQFUL ->
  `Throttled(retry_after=queue_full_delay)`: `CarrierLink` pauses the whole link;
- ESME_RSYSERR, ESME_RX_T_APPN -> `RetryableError`; ESME_RINVBNDSTS -> `CarrierDown`;
- any other status -> `PermanentError` with the status name as code ("ESME_RINVDSTADR");
- no answer within `response_timeout` -> `RetryableError(code="timeout")`.

When parts of one message fare differently, the gravest error is raised (permanent, down,
retryable, throttled, in that order); a retry then sends every part again.

`run` raises `BindRefused` (a `CarrierDown`) when the carrier refuses the credentials or the
bind limit, so the supervisor can back off slowly, and `CarrierDown` when the session breaks
(closed, unbound by the carrier, enquire_link unanswered, `max_timeouts` timeouts in a row).
Cancelled, it unbinds first.

Receiving: every deliver_sm (and data_sm) is handled in its own task. A receipt (esm_class &
0x04) becomes a `DeliveryEvent` (`rabbitry.carriers.smpp._receipts`), with the id normalised as
`receipt_id_format` says, even when it arrives before its submit_sm_resp (the platform keeps such
early reports). Anything else is an inbound SMS (`rabbitry.carriers.smpp._inbound`); the parts of a
long one are joined before the `InboundEvent` goes out. Each deliver_sm is answered
(deliver_sm_resp) only after `await events(event)` returned; a part still waiting for the rest
is answered once held, and held in memory only (a part lost in a crash shows as a shorter text
after `reassembly_timeout`). A deliver_sm that does not decode gets generic_nack.
"""

import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager

import trio

from rabbitry.carriers import (
    Accepted,
    CarrierDown,
    CarrierError,
    EventSink,
    Health,
    PermanentError,
    RetryableError,
    Submission,
    Throttled,
)
from rabbitry.carriers.smpp._gsm import encode_gsm7
from rabbitry.carriers.smpp._inbound import Reassembler, decode_inbound
from rabbitry.carriers.smpp._options import SmppOptions
from rabbitry.carriers.smpp._pdu import (
    BIND_RECEIVER,
    BIND_TRANSCEIVER,
    BIND_TRANSMITTER,
    DELIVER_SM,
    ESME_RINVBNDSTS,
    ESME_RINVCMDLEN,
    ESME_RMSGQFUL,
    ESME_ROK,
    ESME_RSYSERR,
    ESME_RTHROTTLED,
    ESME_RX_T_APPN,
    GENERIC_NACK,
    SUBMIT_SM,
    Bind,
    Frame,
    PduError,
    ShortMessage,
    decode_message_id,
    status_name,
)
from rabbitry.carriers.smpp._receipts import (
    ReceiptError,
    is_receipt,
    normalise_id,
    parse_receipt,
)
from rabbitry.carriers.smpp._session import Session, SessionSettings, open_session

_log = logging.getLogger("rabbitry.carriers.smpp")

UDHI = 0x40
_NO_MESSAGE_ID = b"\x00"  # deliver_sm_resp's message_id, unused
_GRAVITY = (PermanentError, CarrierDown, RetryableError, Throttled)
_BIND_NAMES = {
    BIND_TRANSCEIVER: "transceiver",
    BIND_TRANSMITTER: "transmitter",
    BIND_RECEIVER: "receiver",
}


class SmppConnector:
    """A connector speaking SMPP 3.4 to one SMSC; see the module docstring."""

    def __init__(self, name: str, options: Mapping[str, object]) -> None:
        self.name = name
        self.options = SmppOptions.parse(name, options)
        o = self.options
        self.settings = SessionSettings(
            response_timeout=o.response_timeout,
            enquire_link_interval=o.enquire_link_interval,
            max_timeouts=o.max_timeouts,
            connect_timeout=o.connect_timeout,
            unbind_timeout=o.unbind_timeout,
            tls=o.tls_context(),
            server_name=o.tls_server_name,
        )
        self.inbound = Reassembler(o.reassembly_timeout)
        self._sessions: tuple[Session, ...] = ()
        self._transmitter: Session | None = None
        self._running = False
        self._reference = random.randrange(256)
        self._inbound_added = trio.lowlevel.ParkingLot()

    async def run(
        self, events: EventSink, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Connects and binds, then serves the session(s) until cancelled (then unbinds)."""
        if self._running:
            raise RuntimeError(f"smpp connector {self.name!r} is already running")
        self._running = True
        try:
            if self.options.bind == "transceiver":
                async with self._open(BIND_TRANSCEIVER) as session:
                    self._up(session, session)
                    task_status.started()
                    await _all_or_first_error(self._serve(session, events), self._expire(events))
            else:
                async with self._open(BIND_TRANSMITTER) as sender, self._open(BIND_RECEIVER) as rx:
                    self._up(sender, sender, rx)
                    task_status.started()
                    await _all_or_first_error(
                        self._serve(sender, events), self._serve(rx, events), self._expire(events)
                    )
        finally:
            self._running = False
            self._transmitter = None
            self._sessions = ()

    @asynccontextmanager
    async def _open(self, command_id: int) -> AsyncIterator[Session]:
        o = self.options
        async with open_session(o.host, o.port, self.settings, label=self.name) as session:
            bind = Bind(o.system_id, o.password.reveal(), o.system_type)
            smsc = await session.bind(command_id, bind)
            _log.info(
                "smpp %s: bound as %s to %s:%d as %r (SMSC %r)",
                self.name,
                _BIND_NAMES[command_id],
                o.host,
                o.port,
                o.system_id,
                smsc,
            )
            yield session

    def _up(self, transmitter: Session, *sessions: Session) -> None:
        self._transmitter = transmitter
        self._sessions = sessions

    def _serve(self, session: Session, events: EventSink) -> Callable[[], Awaitable[None]]:
        async def on_request(session: Session, frame: Frame) -> None:
            await self._delivered(session, frame, events)

        async def serve() -> None:
            await session.serve(on_request)

        return serve

    def _expire(self, events: EventSink) -> Callable[[], Awaitable[None]]:
        async def expire() -> None:
            while True:
                deadline = self.inbound.next_deadline()
                if deadline is None:
                    await self._inbound_added.park()
                    continue
                await trio.sleep_until(deadline)
                for event in self.inbound.expired(trio.current_time()):
                    _log.warning(
                        "smpp %s: inbound SMS from %s to %s incomplete after %s s; passed on"
                        " with the parts that came",
                        self.name,
                        event.sender,
                        event.to,
                        self.options.reassembly_timeout,
                    )
                    await events(event)

        return expire

    async def submit(self, submission: Submission) -> Accepted:
        """Sends every part of `submission`; returns their message_ids, or raises (see above)."""
        session = self._transmitter
        if session is None or not session.bound:
            raise CarrierDown(f"carrier {self.name!r} is not bound", code="down")
        try:
            bodies = self._bodies(submission)
        except ValueError as exc:
            raise PermanentError(
                f"message {submission.message_id!r} cannot go to carrier {self.name!r}: {exc}",
                code="invalid",
            ) from exc
        waiters = [session.request(SUBMIT_SM, body) for body in bodies]
        ids: list[str] = []
        errors: list[CarrierError] = []
        try:
            for part, waiter in enumerate(waiters, 1):
                try:
                    frame = await session.response(waiter)
                    ids.append(self._accepted(frame, submission, part))
                except CarrierError as exc:
                    errors.append(exc)
        finally:
            for waiter in waiters:
                session.forget(waiter)
        if errors:
            raise min(errors, key=_gravity)
        return Accepted(tuple(ids))

    def _bodies(self, submission: Submission) -> list[bytes]:
        o = self.options
        gsm = submission.encoding == "gsm7"
        payloads = [
            encode_gsm7(part) if gsm else part.encode("utf-16-be") for part in submission.parts
        ]
        total = len(payloads)
        if total > 255:
            raise ValueError(f"a text of {total} parts is more than a UDH can number (255)")
        headers = [b""]
        if total > 1:
            reference = self._reference = (self._reference + 1) % 256
            headers = [bytes((5, 0, 3, reference, total, seq)) for seq in range(1, total + 1)]
        source_ton, source_npi = _source_type(submission.sender, o.source_ton, o.source_npi)
        return [
            ShortMessage(
                service_type=o.service_type,
                source_addr_ton=source_ton,
                source_addr_npi=source_npi,
                source_addr=submission.sender.removeprefix("+"),
                dest_addr_ton=o.dest_ton,
                dest_addr_npi=o.dest_npi,
                destination_addr=submission.to.removeprefix("+"),
                esm_class=UDHI if total > 1 else 0,
                registered_delivery=o.registered_delivery,
                data_coding=0 if gsm else 8,
                short_message=header + payload,
            ).encode()
            for header, payload in zip(headers, payloads, strict=True)
        ]

    def _accepted(self, frame: Frame, submission: Submission, part: int) -> str:
        status = frame.status
        if status == ESME_ROK and frame.command_id != GENERIC_NACK:
            raw = decode_message_id(frame.body, "submit_sm_resp")
            if not raw:
                _log.warning(
                    "smpp %s: submit_sm_resp without message_id for %s part %d; its receipt"
                    " cannot be matched",
                    self.name,
                    submission.message_id,
                    part,
                )
            return normalise_id(raw, self.options.submit_id_format)
        name = status_name(status)
        what = (
            f"carrier {self.name!r} answered part {part}/{submission.segments} of message"
            f" {submission.message_id!r} with {name}"
        )
        if status == ESME_RTHROTTLED:
            raise Throttled(what, retry_after=self.options.throttle_delay, code=name)
        if status == ESME_RMSGQFUL:
            raise Throttled(what, retry_after=self.options.queue_full_delay, code=name)
        if status in (ESME_RSYSERR, ESME_RX_T_APPN) or status == ESME_ROK:
            raise RetryableError(what, code=name if status else "generic_nack")
        if status == ESME_RINVBNDSTS:
            raise CarrierDown(what, code=name)
        raise PermanentError(what, code=name)

    async def _delivered(self, session: Session, frame: Frame, events: EventSink) -> None:
        try:
            if frame.command_id == DELIVER_SM:
                message = ShortMessage.decode(frame.body)
            else:
                message = ShortMessage.decode_data_sm(frame.body)
        except PduError as exc:
            _log.warning("smpp %s: garbled PDU answered generic_nack: %s", self.name, exc)
            session.nack(frame, ESME_RINVCMDLEN)
            return
        if is_receipt(message):
            try:
                report = parse_receipt(message, self.options.receipt_id_format)
            except ReceiptError as exc:
                _log.warning("smpp %s: receipt dropped: %s", self.name, exc)
            else:
                await events(report)
        else:
            inbound = self.inbound.add(decode_inbound(message), trio.current_time())
            if inbound is not None:
                await events(inbound)
            else:
                self._inbound_added.unpark_all()  # the expiry task may have nothing to wait for
        session.respond(frame, _NO_MESSAGE_ID)

    def health(self) -> Health:
        """The state: bound when every session is; degraded after timeouts; else down."""
        sessions = self._sessions
        if not sessions or not all(session.bound for session in sessions):
            return "down"
        if any(session.timeouts for session in sessions):
            return "degraded"
        return "bound"


def _source_type(sender: str, ton: int | None, npi: int | None) -> tuple[int, int]:
    if ton is not None and npi is not None:
        return ton, npi
    if sender.startswith("+") and sender[1:].isdigit():
        return 1, 1  # international, E.164
    if sender.isdigit():
        return 0, 1  # unknown (a short code or a national number), E.164
    return 5, 0  # alphanumeric


def _gravity(error: CarrierError) -> int:
    for rank, kind in enumerate(_GRAVITY):
        if isinstance(error, kind):
            return rank
    return len(_GRAVITY)


async def _all_or_first_error(*tasks: Callable[[], Awaitable[None]]) -> None:
    """Runs `tasks` until cancelled; the first error cancels the rest and is raised as it is."""
    errors: list[Exception] = []
    async with trio.open_nursery() as nursery:

        async def guarded(task: Callable[[], Awaitable[None]]) -> None:
            try:
                await task()
            except Exception as exc:  # noqa: BLE001 - raised as it is, once the rest stopped
                errors.append(exc)
                nursery.cancel_scope.cancel()

        for task in tasks:
            nursery.start_soon(guarded, task)
    if errors:
        raise errors[0]
