"""The generic REST connector (the `http` plugin): one carrier's send endpoint and webhooks.

    connector = HttpConnector("acme", {
        "url": "https://api.acme.example/v1/sms",
        "auth": {"kind": "bearer", "token_env": "ACME_TOKEN"},
        "response": {"id_path": "messages.*.id"},
        "webhook_secret_env": "ACME_WEBHOOK_SECRET",
        "dlr": {"id_field": "id", "status_field": "status", "error_field": "error"},
    })
    async with trio.open_nursery() as nursery:
        await nursery.start(connector.run, sink)     # the keep-alive client is open
        accepted = await connector.submit(Submission.of("m-1", "+33612345678", "Shop", text))
        accepted.carrier_ids                          # one id per part
        # the gateway hands the carrier's webhooks over; this returns once the sink stored it:
        await connector.handle_webhook("dlr", raw_body, request_headers)

Declared as the `http` plugin (entry point group `rabbitry.carriers`); its options are
`rabbitry.carriers.http._options`, the webhooks `rabbitry.carriers.http._webhooks`.

`run` opens one `httpx.AsyncClient` (keep-alive, `connections` at most; trio through anyio) with
the static headers and the auth header (kept out of every log and error), reports started, and
holds it and the event sink until cancelled. `submit` sends one request per message (all its
parts: the carrier splits the text), within `timeout` seconds in all, and maps the answer:

- 2xx -> read by `response` (`id_path`, `status_path`/`ok_values`; a status not ok goes by the
  status lists: throttled -> `Throttled`, retryable -> `RetryableError`, down -> `CarrierDown`,
  else `PermanentError`, each with the status as code; when several parts disagree the gravest
  wins: permanent, down, retryable, throttled). A 2xx that does not hold what `response` names
  (not JSON, no id, no status) is `RetryableError(code="bad_answer")`: the platform sends at
  least once.
- 429 -> `Throttled(retry_after=Retry-After, seconds or HTTP date, at most 3600; else
  throttle_delay)`; 5xx and 408 -> `RetryableError` (with Retry-After when given); 401 and 403
  -> `AuthenticationFailed` (a `CarrierDown`: the route fails over), and `run` ends raising it
  too, so the carrier actor waits before it runs again rather than have every message knock
  with refused credentials; any other 4xx -> `PermanentError`; anything else (3xx) ->
  `CarrierDown` (the url is wrong). Codes are "http_<status>".
- no answer within `timeout` -> `RetryableError(code="timeout")`; a connection that fails ->
  `RetryableError(code="connection")`; a request cut because `run` ended -> `CarrierDown`.

`health()` is "down" unless `run` runs, "degraded" after `degraded_after` retryable or down
failures in a row (an accepted or permanently refused message resets the count), else "bound".
"""

import email.utils
import logging
import math
import os
import time
from collections.abc import Mapping
from typing import Literal

import httpx
import trio

from rabbitry.carriers import (
    Accepted,
    AuthenticationFailed,
    CarrierDown,
    CarrierError,
    EventSink,
    Health,
    PermanentError,
    RetryableError,
    Submission,
    Throttled,
)
from rabbitry.carriers.http._options import HttpOptions
from rabbitry.carriers.http._template import Path, Scalar, find, show_path
from rabbitry.carriers.http._webhooks import (
    delivery_event,
    inbound_event,
    parse_body,
    verify_signature,
)

_log = logging.getLogger("rabbitry.carriers.http")

MAX_RETRY_AFTER = 3600.0
"""The longest pause a Retry-After header is taken at (seconds)."""

CLOSE_TIMEOUT = 5.0
"""How long closing the client's connections may take when `run` ends."""

_GRAVITY = (PermanentError, CarrierDown, RetryableError, Throttled)
_SNIPPET = 200  # characters of a carrier's answer quoted in an error


class HttpConnector:
    """A connector to one carrier's REST API; see the module docstring."""

    def __init__(
        self,
        name: str,
        options: Mapping[str, object],
        *,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.options = HttpOptions.parse(
            name, options, environ=os.environ if environ is None else environ
        )
        self._client: httpx.AsyncClient | None = None
        self._sink: EventSink | None = None
        self._failures = 0  # retryable or down failures in a row
        self._refused: AuthenticationFailed | None = None  # ends `run`
        self._stop = trio.Event()

    async def run(
        self, events: EventSink, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Opens the keep-alive client, reports started, holds it and `events` until cancelled."""
        if self._client is not None:
            raise RuntimeError(f"http connector {self.name!r} is already running")
        o = self.options
        headers = {
            key: value if isinstance(value, str) else value.reveal()
            for key, value in o.headers.items()
        }
        if o.auth is not None:
            headers[o.auth.header] = o.auth.value.reveal()
        client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(o.timeout),
            limits=httpx.Limits(
                max_connections=o.connections, max_keepalive_connections=o.connections
            ),
            follow_redirects=False,
        )
        try:
            self._client, self._sink, self._failures = client, events, 0
            self._refused, self._stop = None, trio.Event()
            task_status.started()
            await self._stop.wait()
            code = self._refused.code if self._refused is not None else "auth"
            raise AuthenticationFailed(
                f"carrier {self.name!r} refused our credentials ({code}); check options.auth",
                code=code,
            )
        finally:
            self._client = self._sink = None
            with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT):
                await client.aclose()

    async def submit(self, submission: Submission) -> Accepted:
        """Sends `submission`; returns the carrier's ids, one per part, or raises (see above)."""
        client = self._client
        if client is None:
            raise CarrierDown(f"carrier {self.name!r} is not connected", code="down")
        try:
            accepted = await self._send(client, submission)
        except AuthenticationFailed as refused:
            self._failures += 1
            if self._client is client and self._refused is None:
                self._refused = refused
                self._stop.set()
            raise
        except (RetryableError, CarrierDown):
            self._failures += 1
            if self._client is not client:
                raise CarrierDown(
                    f"carrier {self.name!r} stopped while message {submission.message_id!r} was"
                    " in flight",
                    code="down",
                ) from None
            raise
        except PermanentError:
            self._failures = 0
            raise
        self._failures = 0
        return accepted

    async def _send(self, client: httpx.AsyncClient, submission: Submission) -> Accepted:
        o = self.options
        body = o.request.render(self._values(submission))
        what = f"carrier {self.name!r} (message {submission.message_id!r})"
        try:
            with trio.fail_after(o.timeout):
                if o.format == "json":
                    response = await client.request(o.method, o.url, json=body)
                else:
                    response = await client.request(o.method, o.url, data=body)
        except (trio.TooSlowError, httpx.TimeoutException):
            raise RetryableError(
                f"{what} did not answer within {o.timeout:g} s (options.timeout)", code="timeout"
            ) from None
        except httpx.TransportError as exc:
            raise RetryableError(
                f"{what} could not be reached: {type(exc).__name__}: {exc}", code="connection"
            ) from None
        return self._answer(response, submission, what)

    def _values(self, submission: Submission) -> dict[str, Scalar]:
        o = self.options
        return {
            "to": submission.to,
            "from": submission.sender,
            "text": submission.text,
            "message_id": submission.message_id,
            "encoding": o.encodings[submission.encoding],
            "segments": submission.segments,
            "callback_url": o.callback_url,
            "to_digits": _digits(submission.to),
            "from_digits": _digits(submission.sender),
        }

    def _answer(self, response: httpx.Response, submission: Submission, what: str) -> Accepted:
        status = response.status_code
        code = f"http_{status}"
        said = f"{what} answered HTTP {status}"
        if 200 <= status < 300:
            return self._read(response, submission, what)
        if status == 429:
            delay = _retry_after(response)
            raise Throttled(
                said, retry_after=self.options.throttle_delay if delay is None else delay, code=code
            )
        if status in (401, 403):
            raise AuthenticationFailed(
                f"{said}, refusing our credentials: check options.auth", code=code
            )
        if status >= 500 or status == 408:
            raise RetryableError(
                f"{said}{_snippet(response)}", retry_after=_retry_after(response), code=code
            )
        if 400 <= status < 500:
            raise PermanentError(f"{said}{_snippet(response)}", code=code)
        raise CarrierDown(f"{said}, not an answer of a send endpoint: check options.url", code=code)

    def _read(self, response: httpx.Response, submission: Submission, what: str) -> Accepted:
        mapping = self.options.response
        if mapping.id_path is None and mapping.status_path is None:
            return Accepted((submission.message_id,) * submission.segments)
        try:
            document: object = response.json()
        except ValueError:
            raise RetryableError(
                f"{what} answered HTTP {response.status_code} with a body that is not JSON"
                f"{_snippet(response)}",
                code="bad_answer",
            ) from None
        if mapping.status_path is not None:
            statuses = self._found(document, mapping.status_path, "status_path", what, response)
            errors = [
                self._refusal(status, document, what)
                for status in statuses
                if status not in mapping.ok_values
            ]
            if errors:
                raise min(errors, key=_gravity)
        if mapping.id_path is None:
            return Accepted((submission.message_id,) * submission.segments)
        ids = self._found(document, mapping.id_path, "id_path", what, response)
        if len(ids) == 1:
            return Accepted(tuple(ids) * submission.segments)
        if len(ids) != submission.segments:
            _log.warning(
                "http %s: %d ids for the %d parts of message %s (response.id_path %s)",
                self.name,
                len(ids),
                submission.segments,
                submission.message_id,
                show_path(mapping.id_path),
            )
        return Accepted(tuple(ids))

    def _found(
        self, document: object, path: Path, key: str, what: str, response: httpx.Response
    ) -> list[str]:
        values = [_scalar(value) for value in find(document, path)]
        found = [value for value in values if value is not None]
        if not found or len(found) != len(values):
            raise RetryableError(
                f"{what} answered HTTP {response.status_code} without a value at"
                f" {show_path(path)!r} (options.response.{key}){_snippet(response)}",
                code="bad_answer",
            )
        return found

    def _refusal(self, status: str, document: object, what: str) -> CarrierError:
        mapping = self.options.response
        said = f"{what} answered status {status!r}"
        if mapping.error_path is not None:
            texts = dict.fromkeys(
                text for text in map(_scalar, find(document, mapping.error_path)) if text
            )
            if texts:
                said += f" ({'; '.join(texts)})"
        if status in mapping.throttled_statuses:
            return Throttled(said, retry_after=self.options.throttle_delay, code=status)
        if status in mapping.retryable_statuses:
            return RetryableError(said, code=status)
        if status in mapping.down_statuses:
            return CarrierDown(said, code=status)
        return PermanentError(said, code=status)

    async def handle_webhook(
        self, kind: Literal["dlr", "inbound"], body: bytes, headers: Mapping[str, str]
    ) -> dict[str, object]:
        """Checks, reads and stores one webhook; returns once the sink took its event.

        Raises `WebhookRefused` (signature), `InvalidWebhook` (body), `CarrierDown` (not
        running: the carrier should send it again later).
        """
        if kind not in ("dlr", "inbound"):
            raise ValueError(f"webhook kind must be 'dlr' or 'inbound' (got {kind!r})")
        o = self.options
        signature = verify_signature(self.name, o.webhook_secret, body, headers)
        fields = parse_body(body, headers)
        event = (
            delivery_event(o.dlr, fields)
            if kind == "dlr"
            else inbound_event(o.inbound, fields, signature)
        )
        if event is None:
            return {"status": "ignored", "reason": "not a final delivery status"}
        sink = self._sink
        if sink is None:
            raise CarrierDown(
                f"carrier {self.name!r} is not running; its {kind} webhook must be sent again"
            )
        await sink(event)
        return {"status": "accepted"}

    def health(self) -> Health:
        """The state: "down" unless running, "degraded" after failures in a row, else "bound"."""
        if self._client is None:
            return "down"
        if self._failures >= self.options.degraded_after:
            return "degraded"
        return "bound"


def _digits(number: str) -> str:
    return number.removeprefix("+") if number[1:].isdigit() else number


def _scalar(value: object) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:g}"
    return None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _snippet(response: httpx.Response) -> str:
    text = response.text.strip()
    if not text:
        return ""
    cut = text[:_SNIPPET] + ("..." if len(text) > _SNIPPET else "")
    return f": {cut!r}"


def _gravity(error: CarrierError) -> int:
    for rank, kind in enumerate(_GRAVITY):
        if isinstance(error, kind):
            return rank
    return len(_GRAVITY)
