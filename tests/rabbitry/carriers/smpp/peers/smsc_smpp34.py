"""A scripted SMSC on the `smpp34` package's server (Rust core, asyncio API), for loopback tests.

    python smsc_smpp34.py PORT [--dlr text|tlv|none] [--stat DELIVRD] [--err 000]
        [--reject-every N --reject-status 0x58] [--withhold-after N] [--close-after N]
        [--dlr-first] [--ids plain|hex-dec|case-zeros] [--mo FILE [--mo-on-signal]] [--quiet]

It prints one JSON object a line on stdout: {"event": "listening"} once it listens, then
"bound", "submit" (every field of the submit_sm, short_message in hex, the session it came on and
what it answered), "deliver_resp" (the status of each deliver_sm it pushed, with its "tag"),
"deliver_failed" (a deliver_sm not answered), "receipt_stored" (a receipt kept for the next
bind) and "unbound". Every record has "at", the
system's monotonic clock (`time.monotonic()` in any process of the machine).

Receipts are stored and forwarded, as a real SMSC does: one goes to the session that submitted
its message while that session is bound, else to another receiving bind (receiver or
transceiver) of the same system_id, else it waits for the next such bind; one whose deliver_sm
failed (its session ended before answering) is forwarded the same way a second later.

- `--dlr`: after accepting a submit, push a receipt for it as text (appendix B) or as TLVs
  (receipted_message_id, message_state, network_error_code), or none.
- `--reject-every N --reject-status S`: answer every Nth submit with status S instead.
- `--withhold-after N`: answer the first N submits, never the later ones.
- `--close-after N`: after N submits, exit at once (the socket closes without unbind).
- `--dlr-first`: push the receipt and wait for its deliver_sm_resp before answering the submit.
- `--ids`: message ids "m<n>" (plain); "%08X" in the resp and decimal in the receipt (hex-dec);
  "00" + "%X" in the resp and lower case without zeros in the receipt (case-zeros).
- `--mo FILE`: once bound, push each deliver_sm of the JSON list in FILE (all at once), with
  keys of smpp34's deliver_sm, short_message in hex, tlvs as [[tag, hex], ...], and a "tag".
- `--mo-on-signal`: push them on each SIGUSR1 instead (to the last session bound; printing
  "mo_skipped" when none is), so a test sends an inbound SMS when it wants one.
- `--quiet`: print no "submit" lines (for benchmarks).

smpp34's server checks no password. It ends with os._exit: its interpreter exit sometimes
crashes (see sms-domain.md section 2).
"""

import argparse
import asyncio
import itertools
import json
import os
import signal
import sys
import time
from typing import Any

import smpp34

STATES = {"ENROUTE": 1, "DELIVRD": 2, "EXPIRED": 3, "DELETED": 4, "UNDELIV": 5, "ACCEPTD": 6}
STATES.update({"UNKNOWN": 7, "REJECTD": 8})


RESEND_DELAY = 1.0
"""Seconds before a receipt whose deliver_sm failed is forwarded again."""


def say(**record: Any) -> None:
    record["at"] = time.monotonic()
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def ids(style: str, n: int) -> tuple[str, str]:
    """The id in the submit_sm_resp and the id in the receipt, for the nth message."""
    if style == "hex-dec":
        return f"{n:08X}", str(n)
    if style == "case-zeros":
        return f"00{n + 0xA0:X}", f"{n + 0xA0:x}"
    return f"m{n}", f"m{n}"


def receipt(args: argparse.Namespace, event: Any, receipt_id: str) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "source_addr": event.destination_addr,
        "destination_addr": event.source_addr,
        "esm_class": 0x04,
    }
    if args.dlr == "tlv":
        fields["tlvs"] = [
            smpp34.Tlv(smpp34.TLV_RECEIPTED_MESSAGE_ID, receipt_id.encode() + b"\x00"),
            smpp34.Tlv(smpp34.TLV_MESSAGE_STATE, bytes([STATES[args.stat]])),
            smpp34.Tlv(smpp34.TLV_NETWORK_ERROR_CODE, b"\x03" + int(args.err).to_bytes(2, "big")),
        ]
    else:
        fields["short_message"] = (
            f"id:{receipt_id} sub:001 dlvrd:001 submit date:2601011200 done date:2601011201"
            f" stat:{args.stat} err:{args.err} text:"
        ).encode()
    return fields


async def push(esme: Any, tag: str, fields: dict[str, Any]) -> None:
    destination = fields.pop("destination_addr")
    response = await esme.deliver_sm(destination, **fields)
    say(event="deliver_resp", tag=tag, status=response.command_status)


def mo_fields(spec: dict[str, Any]) -> dict[str, Any]:
    fields = dict(spec)
    fields.pop("tag", None)
    fields["short_message"] = bytes.fromhex(fields.get("short_message", ""))
    fields["tlvs"] = [smpp34.Tlv(tag, bytes.fromhex(value)) for tag, value in spec.get("tlvs", [])]
    return fields


async def main(args: argparse.Namespace, mo: list[dict[str, Any]]) -> None:
    server = smpp34.Server(host="127.0.0.1", port=args.port, system_id="SMPP34")
    await server.start()
    say(event="listening", port=args.port)
    sessions: dict[str, Any] = {}
    stored: dict[str, list[tuple[str, dict[str, Any]]]] = {}  # system_id -> receipts to forward
    counter = itertools.count(1)
    held: list[Any] = []  # withheld submits: dropping one would answer it ESME_RSYSERR
    tasks: set[asyncio.Task[None]] = set()

    def spawn(coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def push_mo() -> None:
        if not sessions:
            say(event="mo_skipped")
            return
        esme = list(sessions.values())[-1]
        for spec in mo:
            spawn(push(esme, spec.get("tag", ""), mo_fields(spec)))

    def forward(system_id: str, session: str, tag: str, fields: dict[str, Any]) -> None:
        """Pushes a receipt to `session`, or another receiving bind of `system_id`, or keeps it
        for the next one."""
        receivers = [
            esme for esme in sessions.values() if esme.system_id == system_id and esme.can_receive
        ]
        esme = sessions.get(session)
        if esme is None or not esme.can_receive:
            esme = receivers[-1] if receivers else None
        if esme is None:
            stored.setdefault(system_id, []).append((tag, fields))
            say(event="receipt_stored", tag=tag, system_id=system_id)
            return
        spawn(push_receipt(esme, tag, fields))

    async def push_receipt(esme: Any, tag: str, fields: dict[str, Any]) -> None:
        try:
            await push(esme, tag, dict(fields))
        except smpp34.SmppError as error:
            say(event="deliver_failed", tag=tag, session=esme.session_id, error=str(error))
            await asyncio.sleep(RESEND_DELAY)  # its session's end is known by then
            forward(esme.system_id, esme.session_id, tag, fields)

    if args.mo_on_signal:
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, push_mo)

    while True:
        event = await server.next()
        if isinstance(event, smpp34.Esme):
            sessions[event.session_id] = event
            say(event="bound", system_id=event.system_id, session=event.session_id)
            if event.can_receive:
                for tag, fields in stored.pop(event.system_id, []):
                    spawn(push_receipt(event, tag, fields))
            if not args.mo_on_signal:
                for spec in mo:
                    spawn(push(event, spec.get("tag", ""), mo_fields(spec)))
                mo = []
        elif isinstance(event, smpp34.Unbound):
            sessions.pop(event.session_id, None)
            say(event="unbound", session=event.session_id)
        elif isinstance(event, smpp34.SubmitSmEvent):
            n = next(counter)
            record = {
                "event": "submit",
                "n": n,
                "source_addr": event.source_addr,
                "source_addr_ton": event.source_addr_ton,
                "source_addr_npi": event.source_addr_npi,
                "destination_addr": event.destination_addr,
                "dest_addr_ton": event.dest_addr_ton,
                "dest_addr_npi": event.dest_addr_npi,
                "esm_class": event.esm_class,
                "data_coding": event.data_coding,
                "registered_delivery": event.registered_delivery,
                "short_message": event.short_message.hex(),
                "session": event.session_id,
            }
            if args.close_after and n > args.close_after:
                os._exit(0)
            if args.withhold_after is not None and n > args.withhold_after:
                held.append(event)
                record["answer"] = "withheld"
            elif args.reject_every and n % args.reject_every == 0:
                event.reject(int(args.reject_status, 0))
                record["answer"] = int(args.reject_status, 0)
            else:
                resp_id, receipt_id = ids(args.ids, n)
                record["answer"], record["message_id"] = 0, resp_id
                esme = sessions.get(event.session_id)
                if args.dlr != "none" and esme is not None:
                    fields = receipt(args, event, receipt_id)
                    if args.dlr_first:
                        spawn(_receipt_first(esme, f"dlr-{n}", fields, event, resp_id))
                    else:
                        event.accept(message_id=resp_id)
                        forward(esme.system_id, esme.session_id, f"dlr-{n}", fields)
                else:
                    event.accept(message_id=resp_id)
            if not args.quiet:
                say(**record)


async def _receipt_first(esme: Any, tag: str, fields: dict[str, Any], event: Any, mid: str) -> None:
    await push(esme, tag, fields)
    event.accept(message_id=mid)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--dlr", choices=["text", "tlv", "none"], default="text")
    parser.add_argument("--stat", default="DELIVRD")
    parser.add_argument("--err", default="000")
    parser.add_argument("--reject-every", type=int, default=0)
    parser.add_argument("--reject-status", default="0x58")
    parser.add_argument("--withhold-after", type=int, default=None)
    parser.add_argument("--close-after", type=int, default=0)
    parser.add_argument("--dlr-first", action="store_true")
    parser.add_argument("--ids", choices=["plain", "hex-dec", "case-zeros"], default="plain")
    parser.add_argument("--mo", default="")
    parser.add_argument("--mo-on-signal", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    return parser.parse_args(argv)


if __name__ == "__main__":
    try:
        arguments = parse(sys.argv[1:])
        with open(arguments.mo or os.devnull) as specs:
            asyncio.run(main(arguments, json.loads(specs.read() or "[]")))
    except KeyboardInterrupt:
        pass
    finally:
        sys.stdout.flush()
        os._exit(0)
