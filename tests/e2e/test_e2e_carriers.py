"""Real connectors through the daemon: a third-party plugin, SMPP to a real SMSC, failover.

The daemon (`rabbitry run`, a subprocess on its own vhost) is driven only through its HTTP API;
the SMSC is the smpp34 test peer of tests/rabbitry/carriers/smpp, also a subprocess, whose printed
records are the carrier's side of the story.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from e2e import (  # type: ignore[import-not-found, unused-ignore]
    config_text,
    open_account,
    poll,
    wait_final,
)

from rabbitry.billing import segment
from rabbitry.carriers.smpp._gsm import decode_gsm7, encode_gsm7

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "rabbitry" / "carriers" / "smpp"))
from smpp_harness import Peer, Peers, open_peers  # type: ignore[import-not-found]

pytestmark = pytest.mark.rabbitmq

ACME = Path(__file__).resolve().parents[2] / "examples" / "rabbitry-acme-carrier"
RATES = {"+33": Decimal("0.0450")}  # as config_text sets them
DEFAULT_RATE = Decimal("0.0500")
PIP_INSTALL = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet"]


def price(to: str, text: str) -> Decimal:
    rate = next((rate for prefix, rate in RATES.items() if to.startswith(prefix)), DEFAULT_RATE)
    return rate * segment(text).segments


def ledger(store: Path, account: str) -> Counter[str]:
    """The ledger entries of `account` by kind ("capture", "release", ...), as `kind id` too."""
    db = sqlite3.connect(store)
    try:
        rows = db.execute(
            "SELECT kind, operation_id FROM entries WHERE account = ?", (account,)
        ).fetchall()
    finally:
        db.close()
    counts: Counter[str] = Counter()
    for kind, operation in rows:
        counts[kind] += 1
        counts[f"{kind} {operation}"] += 1
    return counts


def captures(entries: Counter[str], ids: Iterable[str]) -> dict[str, int]:
    """How many captures the ledger holds for each of `ids` (once each: {id: 1, ...})."""
    return {message: entries[f"capture capture-{message}"] for message in ids}


@pytest.fixture
async def peers(tmp_path: Path) -> AsyncIterator[Peers]:
    async with open_peers(tmp_path) as started:
        yield started


@pytest.fixture
def acme_plugin(tmp_path: Path) -> Path:
    """The example plugin pip-installed into a directory of its own: put it on PYTHONPATH."""
    source = tmp_path / "acme-source"  # a copy: building writes build/ and *.egg-info beside it
    shutil.copytree(
        ACME, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    target = tmp_path / "plugins"
    done = subprocess.run(
        [*PIP_INSTALL, "--target", str(target), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"pip install failed:\n{done.stdout}\n{done.stderr}"
    return target


def smpp_carrier(name: str, peer: Peer, prefixes: str = '["+"]', extra: str = "") -> str:
    return f"""
        [[carriers]]
        name = "{name}"
        plugin = "smpp"
        prefixes = {prefixes}
        {extra}
        [carriers.options]
        host = "127.0.0.1"
        port = {peer.port}
        system_id = "rabbitry"
        password = "secret1"
        """


async def test_a_connector_from_another_distribution_runs_in_the_daemon(
    daemon_factory: Any, acme_plugin: Path, tmp_path: Path
) -> None:
    store = tmp_path / "var" / "rabbitry.db"
    outbox = tmp_path / "acme-outbox.jsonl"
    carriers = f"""
        [[carriers]]
        name = "acme"
        plugin = "acme"
        prefixes = ["+"]
        [carriers.options]
        outbox = "{outbox}"
        refuse = ["+33600000666", "+447000000666"]
        """
    config = config_text(store, carriers=carriers)
    # Found through its entry point only: without the installed package, the daemon stops.
    with pytest.raises(AssertionError, match="carrier plugin 'acme' is not installed"):
        await daemon_factory(config)
    path = os.pathsep.join(filter(None, [str(acme_plugin), os.environ.get("PYTHONPATH")]))
    daemon = await daemon_factory(config, env={"PYTHONPATH": path})
    short, long = "Hello from ACME", "ACME [long] message, 2 parts: " * 6
    batches = {
        short: ["+33600000001", "+33600000002", "+33600000003", "+33600000666"],
        long: ["+447000000001", "+447000000002", "+447000000666"],
    }
    async with daemon.client() as admin:
        account, key = await open_account(admin, "10.00")
    sent: dict[str, tuple[str, str]] = {}  # message id -> (to, text)
    async with daemon.client(key) as client:
        for text, numbers in batches.items():
            answer = await client.post(
                "/v1/sms", json={"to": numbers, "from": "Shop", "text": text}
            )
            assert answer.status_code == 202, answer.text
            for message in answer.json()["messages"]:
                sent[message["id"]] = (message["to"], text)
        views = await wait_final(client, list(sent))
        balance = (await client.get("/v1/balance")).json()
    refused = {i for i, (to, _) in sent.items() if to.endswith("666")}
    accepted = set(sent) - refused
    assert {i: views[i]["status"] for i in sent} == {
        i: "failed" if i in refused else "delivered" for i in sent
    }
    assert {views[i]["carrier"] for i in sent} == {"acme"}
    assert all("refused" in views[i]["error"] for i in refused)
    # The outbox holds exactly the accepted ones, whole, with one carrier id per segment.
    lines = [json.loads(line) for line in outbox.read_text().splitlines()]
    assert sorted((line["message_id"], line["to"], line["text"]) for line in lines) == sorted(
        (i, *sent[i]) for i in accepted
    )
    assert all(len(line["carrier_ids"]) == segment(line["text"]).segments for line in lines)
    spent = sum(price(*sent[i]) for i in accepted)
    assert spent == Decimal("0.3350")  # 3 x 0.0450 + 2 x 2 x 0.0500: refused ones refunded
    assert Decimal(balance["balance"]) == Decimal("10.00") - spent
    assert Decimal(balance["held"]) == 0
    entries = ledger(store, account)
    assert (entries["capture"], entries["release"]) == (len(accepted), len(refused))
    assert captures(entries, accepted) == dict.fromkeys(accepted, 1)
    assert all(entries[f"release release-{i}"] == 1 for i in refused)
    assert await daemon.stop() == 0


def deliver(tag: str, sender: str, to: str, data: bytes, **fields: Any) -> dict[str, Any]:
    """A deliver_sm the peer pushes (see the peer's --mo)."""
    return {
        "tag": tag,
        "source_addr": sender,
        "source_addr_ton": 1,
        "destination_addr": to,
        "dest_addr_ton": 1,
        "short_message": data.hex(),
        **fields,
    }


def sent_text(submits: list[dict[str, Any]]) -> str:
    """The text the SMSC got in `submits` (the submit_sm of one message), parts joined."""
    parts = []
    for submit in submits:
        data = bytes.fromhex(submit["short_message"])
        sequence = 1
        if submit["esm_class"] & 0x40:  # a user data header: 05 00 03 ref total seq
            sequence, data = data[5], data[data[0] + 1 :]
        parts.append((sequence, data, submit["data_coding"]))
    octets = b"".join(data for _, data, _ in sorted(parts))
    return octets.decode("utf-16-be") if parts[0][2] == 8 else decode_gsm7(octets)


async def test_smpp_through_the_daemon_with_receipts_and_inbound(
    daemon_factory: Any, peers: Peers, tmp_path: Path
) -> None:
    reply = "Ответ: да, спасибо! 😀 " * 4  # two UCS-2 parts
    octets = reply.encode("utf-16-be")
    cut = len(octets) // 2 // 2 * 2
    udh, ucs2 = bytes((5, 0, 3, 42, 2)), {"esm_class": 0x40, "data_coding": 8}
    mo = [
        deliver("stop", "33611111111", "33700000001", encode_gsm7("STOP")),
        deliver("reply-2", "33622222222", "33700000001", udh + b"\x02" + octets[cut:], **ucs2),
        deliver("reply-1", "33622222222", "33700000001", udh + b"\x01" + octets[:cut], **ucs2),
    ]
    mo_file = tmp_path / "mo.json"
    mo_file.write_text(json.dumps(mo))
    peer = await peers.start("smpp34", "--dlr", "text", "--mo", str(mo_file), "--mo-on-signal")
    store = tmp_path / "var" / "rabbitry.db"
    daemon = await daemon_factory(config_text(store, carriers=smpp_carrier("smsc", peer)))
    await peer.wait_for(event="bound")
    texts = [
        "Your code is 4711. Total: 5€ [paid]",  # GSM-7, escapes included: 1 segment
        "Rabbitry says hello over SMPP. " * 6,  # GSM-7: 2 segments
        "Ваш код: 4711 😀",  # UCS-2: 1 segment
        "Привет из Rabbitry, всё хорошо 😀. " * 3,  # UCS-2: 2 segments
    ]
    assert [(segment(t).encoding.value, segment(t).segments) for t in texts] == [
        ("gsm7", 1),
        ("gsm7", 2),
        ("ucs2", 1),
        ("ucs2", 2),
    ]
    async with daemon.client() as admin:
        account, key = await open_account(admin, "100.00", numbers=["+33700000001"])
    sent: dict[str, tuple[str, str]] = {}
    async with daemon.client(key) as client:
        for k, text in enumerate(texts):
            numbers = [f"+336{k}{i:07d}" if i % 2 else f"+447{k}{i:08d}" for i in range(50)]
            answer = await client.post(
                "/v1/sms", json={"to": numbers, "from": "Shop", "text": text}
            )
            assert answer.status_code == 202, answer.text
            for message in answer.json()["messages"]:
                sent[message["id"]] = (message["to"], text)
        views = await wait_final(client, list(sent))
        balance = (await client.get("/v1/balance")).json()
    assert Counter((views[i]["status"], views[i]["carrier"]) for i in sent) == {
        ("delivered", "smsc"): 200
    }
    segments = sum(segment(text).segments for _, text in sent.values())
    assert segments == 300
    # The SMSC got every part once and we acknowledged every receipt it pushed.
    submits = await peer.wait_all(segments, event="submit")
    assert len(submits) == segments
    by_destination: dict[str, list[dict[str, Any]]] = {}
    for submit in submits:
        by_destination.setdefault("+" + submit["destination_addr"], []).append(submit)
    assert {to: sent_text(parts) for to, parts in by_destination.items()} == dict(sent.values())
    assert {s["data_coding"] for s in submits if s["destination_addr"][3] in "23"} == {8}
    assert {s["data_coding"] for s in submits if s["destination_addr"][3] in "01"} == {0}
    await peer.wait_all(segments, event="deliver_resp", status=0)
    spent = sum(price(*sent[i]) for i in sent)
    assert Decimal(balance["balance"]) == Decimal("100.00") - spent
    assert Decimal(balance["held"]) == 0
    entries = ledger(store, account)
    assert (entries["capture"], entries["release"]) == (200, 0)
    assert captures(entries, sent) == dict.fromkeys(sent, 1)
    # Inbound, when the SMSC decides: a single SMS and one in two parts, sent in reverse.
    peer.process.send_signal(signal.SIGUSR1)
    for tag in ("stop", "reply-1", "reply-2"):
        await peer.wait_for(event="deliver_resp", tag=tag, status=0)
    async with daemon.client(key) as client:
        inbound = await poll(client, "/v1/inbound", lambda view: len(view["messages"]) == 2)
    assert sorted((m["from"], m["to"], m["text"], m["carrier"]) for m in inbound["messages"]) == [
        ("+33611111111", "+33700000001", "STOP", "smsc"),
        ("+33622222222", "+33700000001", reply, "smsc"),
    ]
    assert await daemon.stop() == 0


async def test_killing_the_primary_smsc_mid_batch_fails_over_losing_and_doubling_nothing(
    daemon_factory: Any, peers: Peers, tmp_path: Path
) -> None:
    # --dlr-first: the SMSC answers a submit only once we acknowledged its receipt, so whatever
    # it accepted is already reported when it dies.
    peer = await peers.start("smpp34", "--dlr-first")
    store = tmp_path / "var" / "rabbitry.db"
    carriers = (
        smpp_carrier("primary", peer, '["+44"]', "tps = 400")
        + """
        [[carriers]]
        name = "backup"
        plugin = "simulator"
        prefixes = ["+44"]
        """
    )
    daemon = await daemon_factory(config_text(store, carriers=carriers))
    await peer.wait_for(event="bound")
    async with daemon.client() as admin:
        account, key = await open_account(admin, "200.00")
    numbers = [f"+4471{index:08d}" for index in range(1000)]
    async with daemon.client(key) as client:
        answer = await client.post("/v1/sms", json={"to": numbers, "from": "Shop", "text": "a"})
        assert answer.status_code == 202, answer.text
        ids = {m["id"]: m["to"] for m in answer.json()["messages"]}
        # At 400 a second the primary needs 2.5 s for all: kill it after 200 receipts.
        await peer.wait_for(200, event="deliver_resp", status=0)
        peer.process.kill()
        await peer.wait_ended()
        views = await wait_final(client, list(ids), seconds=30)
        balance = (await client.get("/v1/balance")).json()
    async with daemon.client() as admin:
        stats = {c["name"]: c for c in (await admin.get("/v1/admin/carriers")).json()["carriers"]}
    assert Counter(view["status"] for view in views.values()) == {"delivered": 1000}
    carried: dict[str, set[str]] = {"primary": set(), "backup": set()}
    for message, view in views.items():
        carried[view["carrier"]].add(ids[message])
        # Every step of a message names the one carrier that took it.
        assert {e["carrier"] for e in view["events"] if e["status"] != "queued"} == {
            view["carrier"]
        }, view
    assert carried["primary"], "the primary took nothing before the kill"
    assert carried["backup"], "the primary took everything before the kill"
    # Each carrier took exactly the messages it is named for: no message was taken twice.
    assert stats["primary"]["accepted"] == len(carried["primary"])
    assert stats["backup"]["accepted"] == len(carried["backup"])
    assert len(carried["primary"]) + len(carried["backup"]) == 1000
    answered = {"+" + r["destination_addr"] for r in peer.matching(event="submit", answer=0)}
    assert carried["primary"] <= answered
    # The SMSC saw some of the backup's messages only if they were in flight at the kill (it
    # may have answered, but the answer never reached us): at most the link's window of them.
    assert len(answered & carried["backup"]) <= stats["primary"]["window"]
    assert Decimal(balance["balance"]) == Decimal("200.00") - Decimal("0.0500") * 1000
    assert Decimal(balance["held"]) == 0
    entries = ledger(store, account)
    assert (entries["capture"], entries["release"]) == (1000, 0)
    assert captures(entries, ids) == dict.fromkeys(ids, 1)
    assert await daemon.stop() == 0


async def test_smpp_to_a_password_checking_smsc_and_refused_credentials_fail_over(
    daemon_factory: Any, peers: Peers, tmp_path: Path
) -> None:
    """smpp.twisted3 (Jasmin's server) checks the password: the good bind delivers, with its
    receipts; a carrier configured with a wrong password is refused, and its route fails over."""
    peer = await peers.start("twisted")
    wrong = smpp_carrier("strict", peer, '["+44"]').replace('"secret1"', '"wrong"')
    good = smpp_carrier("jasmin", peer, '["+"]')
    store = tmp_path / "var" / "rabbitry.db"
    daemon = await daemon_factory(config_text(store, carriers=wrong + good))
    async with daemon.client() as admin:
        _, key = await open_account(admin, "10.00")
    numbers = [f"+3361000{index:04d}" for index in range(20)] + ["+447700000001"]
    async with daemon.client(key) as client:
        sent = await client.post("/v1/sms", json={"to": numbers, "from": "Shop", "text": "hi"})
        assert sent.status_code == 202, sent.text
        ids = [m["id"] for m in sent.json()["messages"]]
        views = await wait_final(client, ids, seconds=60)
    assert {views[i]["status"] for i in ids} == {"delivered"}
    assert {views[i]["carrier"] for i in ids} == {"jasmin"}  # +44 failed over from "strict"
    async with daemon.client() as admin:
        carriers = {
            c["name"]: c for c in (await admin.get("/v1/admin/carriers")).json()["carriers"]
        }
    assert carriers["strict"]["health"] == "down"
    assert carriers["jasmin"]["accepted"] == 21
    log = daemon.log.read_text()
    assert "wrong" not in log
    assert await daemon.stop() == 0


async def test_smpp_to_net_smpp_with_receipts(
    daemon_factory: Any, peers: Peers, tmp_path: Path
) -> None:
    """Debian's Net::SMPP as the SMSC: every message submitted, receipted and delivered."""
    peer = await peers.start("netsmpp", "dlr")
    store = tmp_path / "var" / "rabbitry.db"
    daemon = await daemon_factory(config_text(store, carriers=smpp_carrier("perl", peer)))
    async with daemon.client() as admin:
        account, key = await open_account(admin, "10.00")
    texts = ["hello", "ça va ? " * 12]  # one GSM-7 segment; a two-part UCS-2 text (ç)
    numbers = [f"+3362000{index:04d}" for index in range(10)]
    async with daemon.client(key) as client:
        ids = []
        for text in texts:
            sent = await client.post("/v1/sms", json={"to": numbers, "from": "Shop", "text": text})
            assert sent.status_code == 202, sent.text
            ids += [m["id"] for m in sent.json()["messages"]]
        views = await wait_final(client, ids, seconds=60)
        balance = (await client.get("/v1/balance")).json()
    assert {views[i]["status"] for i in ids} == {"delivered"}
    assert {views[i]["carrier"] for i in ids} == {"perl"}
    commands = {record.get("command") for record in peer.records}
    submits = peer.matching(event="pdu", command="submit_sm")
    assert len(submits) == 30, commands  # 10 + 10 x 2 parts
    expected = sum(price(n, t) for n in numbers for t in texts)
    assert Decimal(balance["balance"]) == Decimal("10.00") - expected
    assert ledger(store, account)["capture"] == 20
    assert await daemon.stop() == 0
