"""The public HTTP API fuzzed from its own OpenAPI document, against a running daemon.

The daemon runs in this process on the in-memory broker (tests/rabbitry/daemon/api_daemon.py:
an admin key, a funded account with an inbound number, messages and an invoice, a second account,
the simulator and an HTTP carrier), once on SQLite and once on PostgreSQL. Schemathesis reads its
`GET /openapi.json` and generates requests for every operation, valid ones and ones that break the
document on purpose, sent with the right key, none, a wrong one or the other kind of key; known
ids, owned numbers and reused Idempotency-Keys come in now and then, and a carrier's webhooks are
signed with its secret (or a wrong one). Each answer is checked: never a 5xx; the status, content
type and body the document gives; a request that breaks the document refused; and when the answer
is a refusal (4xx), every table of the store (ledger, records, idempotency answers) is what it was
before, but for the refusal's own idempotency answer when the request carried a key (answers are
kept, refusals too, so that a retry gets the same one). At the end, once the retry tiers had their
time, the parking lot holds only what a stranger's request may leave there (an SMS for a number
nobody owns, a report for no message we sent): nothing the platform failed to handle.

The daemon makes no connection off this machine: customers' callbacks go to a recording client
and names do not resolve (no DNS query leaves), whatever URLs the fuzzer invents.

The suite runs a fixed budget, derandomized. A longer run, with a seed, prints its counts:

    RABBITRY_FUZZ_CASES=5000 RABBITRY_FUZZ_SEED=1 .venv/bin/pytest -p no:cacheprovider -s \\
        tests/rabbitry/daemon/test_fuzz.py
"""

from __future__ import annotations

import collections
import functools
import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
import schemathesis
import trio
from api_daemon import (
    ADMIN_KEY,
    CARRIER_SECRET,
    NUMBER_A,
    NUMBER_B,
    Reader,
    World,
    api_daemon,
    changes,
    open_reader,
    settle,
)
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from rabbitry.carriers.http import SIGNATURE_HEADER, sign_webhook

CASES = {
    "sqlite": int(os.environ.get("RABBITRY_FUZZ_CASES", "300")),
    "postgresql": int(os.environ.get("RABBITRY_FUZZ_CASES", "150")),
}
SEED = os.environ.get("RABBITRY_FUZZ_SEED")
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
# Not fuzzed: the event stream never ends by itself (test_ops and the e2e console test cover it).
SKIPPED = {"GET /v1/admin/events"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# What a fuzzed request may leave in the parking lot: an inbound SMS for a number no account
# owns, a carrier's report for no message we sent (each retried through the tiers first).
PARKED_FOR = {
    "rabbitry.platform._status.UnknownNumber",
    "rabbitry.platform._status.UnmatchedReport",
}
# Text the generator seldom makes, for what a carrier sends: a NUL, controls, the edges of UTF-16,
# line and paragraph separators, an emoji, quotes, a long one.
ODD_TEXTS = [
    "\x00",
    "a\x00b",
    "\x1b[2J",
    "\r\n",
    "\ud7ff\ue000\uffff",
    "\u2028\u2029",
    "\U0001f600",
    "'\"%\\",
    "x" * 5000,
]
KEY_KINDS = ["right"] * 6 + ["none", "wrong", "other", "other"]
CARRIER_ROUTES = ("POST /v1/carriers/{name}/dlr", "POST /v1/carriers/{name}/inbound")


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """The daemon's store: SQLite under tmp_path (None), or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield None
        return
    schema = f"fuzz_{secrets.token_hex(6)}"
    yield f"{POSTGRES}?schema={schema}"
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def test_the_api_answers_every_request_without_5xx_or_a_refusal_that_changes_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: str | None
) -> None:
    cases = CASES["sqlite" if store is None else "postgresql"]
    async with api_daemon(tmp_path, monkeypatch, store) as world:
        started = time.monotonic()
        await trio.to_thread.run_sync(functools.partial(fuzz, world, cases))
        took = time.monotonic() - started
        await trio.sleep(world.retry_seconds + 1)  # what failed went through the tiers
        async with world.admin() as admin:
            parked = (await admin.get("/v1/admin/parked?limit=10000")).json()["messages"]
    print(report(world, took, parked))  # noqa: T201 - the counts, seen with -s
    assert world.failures == {}, "\n\n".join(world.failures.values())
    unexpected = [message for message in parked if message["error_type"] not in PARKED_FOR]
    assert unexpected == []
    assert sum(world.tried.values()) == cases


def report(world: World, took: float, parked: list[dict[str, Any]]) -> str:
    refused = sum(n for (_, status), n in world.statuses.items() if 400 <= status < 500)
    head = (
        f"fuzzed {sum(world.tried.values())} cases in {took:.0f} s on {world.store_url}:"
        f" {refused} refused (4xx), each checked for state changes;"
        f" {len(world.callbacks)} callbacks recorded; parked: "
        + (
            ", ".join(
                f"{kind} {n}"
                for kind, n in collections.Counter(
                    message["error_type"].rsplit(".", 1)[-1] for message in parked
                ).items()
            )
            or "nothing"
        )
    )
    lines = [head]
    for operation, count in sorted(world.tried.items()):
        answers = sorted((s, n) for (o, s), n in world.statuses.items() if o == operation)
        shown = ", ".join(f"{status}: {n}" for status, n in answers)
        lines.append(f"  {operation}: {count} ({shown})")
    return "\n".join(lines)


# The fuzzer (in a worker thread: the daemon runs on the trio loop of the main one)


def fuzz(world: World, cases: int) -> None:
    """Sends `cases` generated requests; what goes wrong lands in `world.failures`."""
    document = requests.get(f"{world.base}/openapi.json", timeout=30).json()
    schema = schemathesis.openapi.from_dict(document)
    operations = [
        (result.ok(), scheme_of(document, result.ok().label))
        for result in schema.get_all_operations()
        if result.ok().label not in SKIPPED
    ]
    # The carriers' webhooks are what strangers reach without a key: tried three times as often.
    operations += [entry for entry in operations if entry[0].label in CARRIER_ROUTES] * 2
    reader = open_reader(world)
    try:
        with requests.Session() as session:

            def run(data: st.DataObject) -> None:
                one_case(world, operations, session, reader, data)

            test = given(st.data())(run)
            if SEED is not None:
                test = seed(int(SEED))(test)
            settings(
                max_examples=cases,
                derandomize=SEED is None,
                database=None,
                deadline=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )(test)()
    finally:
        reader.close()


def scheme_of(document: dict[str, Any], label: str) -> str | None:
    """The security scheme an operation wants ("apiKey", "adminKey"), or None."""
    method, path = label.split(" ", 1)
    security = document["paths"][path][method.lower()]["security"]
    return next(iter(security[0]), None) if security else None


def one_case(
    world: World,
    operations: list[tuple[Any, str | None]],
    session: requests.Session,
    reader: Reader,
    data: st.DataObject,
) -> None:
    operation, scheme = data.draw(st.sampled_from(operations), label="operation")
    label = operation.label
    mode = data.draw(st.sampled_from([GenerationMode.POSITIVE, GenerationMode.NEGATIVE]))
    fixed = {
        name: value
        for name in path_names(operation.path)
        if (
            value := data.draw(
                st.one_of(st.none(), st.sampled_from(known_ids(world, operation.path, name)))
            )
        )
        is not None
    }
    case = data.draw(operation.as_strategy(mode, path_parameters=fixed or None), label="case")
    key_kind = data.draw(st.sampled_from(KEY_KINDS))
    key = key_for(world, label, scheme, key_kind)
    headers = {
        name: value for name, value in (case.headers or {}).items() if name != "Authorization"
    }
    if key:
        headers["Authorization"] = f"Bearer {key}"
    if "Idempotency-Key" in headers or data.draw(st.integers(0, 9)) == 0:
        reuse = data.draw(st.one_of(st.none(), st.sampled_from(["k-1", "k-2", '"k-1"'])))
        if reuse is not None:
            headers["Idempotency-Key"] = reuse
    case.headers = headers
    if mode is GenerationMode.POSITIVE and isinstance(case.body, dict):
        mutate_body(label, case.body, world, data)  # still valid: the document takes it
    world.tried[label] += 1
    before = reader.snapshot()
    try:
        if label in CARRIER_ROUTES and case.path_parameters.get("name") == "rest":
            response = send_signed(case, world, session, key_kind)
        else:
            response = case.call(base_url=world.base, session=session, timeout=30)
    except requests.RequestException as error:
        fail(world, label, "no answer", f"{label}: {error!r}\n{case.as_curl_command()}")
        return
    world.statuses[label, response.status_code] += 1
    checks = [*CHECKS, negative_data_rejection] if mode is GenerationMode.NEGATIVE else CHECKS
    try:
        case.validate_response(response, checks=checks)
    except* AssertionError as group:
        for error in group.exceptions:
            kind = f"{type(error).__name__} {response.status_code}"
            curl = case.as_curl_command()
            fail(world, label, kind, f"{label} answered {response.status_code}:\n{error}\n{curl}")
    after = settle(reader)
    if 400 <= response.status_code < 500:
        scope = world.account if scheme == "apiKey" else "admin"
        changed = changes(before, after, own_answer(scope, headers, key_kind, response))
        if changed:
            detail = f"{label} refused with {response.status_code} {response.text[:300]}"
            fail(world, label, "state", f"{detail} but changed {changed}\n{case.as_curl_command()}")
    if label == "POST /v1/account/api-key" and response.status_code == 200 and key_kind == "right":
        renewed = response.json()["api_key"]
        if renewed:  # a replayed answer does not show the key again
            world.customer_key = renewed


def send_signed(
    case: Any, world: World, session: requests.Session, key_kind: str
) -> requests.Response:
    """A carrier webhook to the HTTP carrier, signed with its secret (`right`), another one
    (`wrong`), a signature 10 minutes old (`other`) or none."""
    body = case.body
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {key: value for key, value in case.headers.items() if key != "Authorization"}
    headers["Content-Type"] = "application/json"
    if key_kind == "right":
        headers[SIGNATURE_HEADER] = sign_webhook(CARRIER_SECRET, raw)
    elif key_kind == "wrong":
        headers[SIGNATURE_HEADER] = sign_webhook("whsec-another", raw)
    elif key_kind == "other":
        headers[SIGNATURE_HEADER] = sign_webhook(
            CARRIER_SECRET, raw, timestamp=int(time.time()) - 600
        )
    url = world.base + case.formatted_path
    return session.post(url, data=raw, headers=headers, timeout=30)


def path_names(path: str) -> list[str]:
    return [part.split("}")[0] for part in path.split("{")[1:]]


def known_ids(world: World, path: str, name: str) -> list[str]:
    accounts = [world.account, world.other_account]
    if path.startswith("/v1/accounts/"):
        return accounts
    return {
        "id": [*world.messages, *world.other_messages, *world.invoices, world.account],
        "account": accounts,
        "name": ["sim", "rest", "rest"],
    }.get(name, ["x"])


def key_for(world: World, label: str, scheme: str | None, kind: str) -> str:
    """The key sent: the route's own (`right`), none, a wrong one, or the other kind's."""
    if kind == "none":
        return ""
    if kind == "wrong":
        return "rk_wrong-key"
    admin_route = scheme == "adminKey" or label in CARRIER_ROUTES  # the simulator's injections
    if kind == "right":
        return ADMIN_KEY if admin_route else world.customer_key
    return world.customer_key if admin_route else (ADMIN_KEY if scheme else world.other_key)


def mutate_body(label: str, body: dict[str, Any], world: World, data: st.DataObject) -> None:
    """Now and then, values the generator would not find: owned numbers, known ids, the fields
    a carrier's webhook reads (with any text in them)."""
    if "numbers" in body and data.draw(st.booleans()):
        body["numbers"] = [data.draw(st.sampled_from([NUMBER_A, NUMBER_B, "+33700000003"]))]
    if "to" in body and data.draw(st.integers(0, 3)) == 0:
        body["to"] = data.draw(st.sampled_from([NUMBER_A, "+99900000001", "+88399000001"]))
    if "amount" in body and data.draw(st.booleans()):
        body["amount"] = data.draw(st.sampled_from(["0.0001", "1", "20.00", "999999999.9999"]))
    if "ids" in body and data.draw(st.booleans()):
        body["ids"] = [data.draw(st.sampled_from(world.messages))]
    if label in CARRIER_ROUTES and data.draw(st.integers(0, 3)) > 0:
        text = st.one_of(st.text(min_size=1, max_size=30), st.sampled_from(ODD_TEXTS))
        if label.endswith("/inbound"):
            to = st.one_of(st.just(NUMBER_A), text)
            body.update(data.draw(st.fixed_dictionaries({"from": text, "to": to, "text": text})))
            body.update(data.draw(st.fixed_dictionaries({}, optional={"id": text})))
        else:
            status = st.one_of(st.sampled_from(["delivered", "failed", "expired"]), text)
            known = st.one_of(st.sampled_from(world.messages), text)
            fields = {"id": known, "status": status}
            body.update(data.draw(st.fixed_dictionaries(fields, optional={"error": text})))


def own_answer(
    scope: str, headers: dict[str, str], key_kind: str, response: requests.Response
) -> Callable[[tuple[Any, ...]], bool] | None:
    """Whether a new row of `platform_answers` is the refusal's own stored answer."""
    key = headers.get("Idempotency-Key")
    if key is None or key_kind != "right":
        return None
    key = key.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    status = response.status_code
    return lambda row: row[0] == scope and row[1] == key and row[3] == status


def fail(world: World, label: str, kind: str, message: str) -> None:
    world.failures.setdefault((label, kind), message)
