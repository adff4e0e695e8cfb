"""The platform's smaller flows behind the gateway: requesting an invoice, injecting an SMS."""

from typing import Any

import attrs
import pytest

from rabbitry.billing import InvalidNumber
from rabbitry.platform import (
    AsyncRecords,
    InboundSms,
    InvoiceJob,
    Names,
    Records,
    inject_inbound,
    request_invoice,
)
from rabbitry.platform._records import InvoiceRecord


@attrs.define
class Publisher:
    published: list[tuple[Any, str, str | None]] = attrs.Factory(list)

    async def publish(
        self,
        message: Any,
        *,
        routing_key: str,
        exchange: str | None = None,
        message_id: str | None = None,
    ) -> None:
        self.published.append((message, routing_key, message_id))


async def test_an_invoice_is_pending_and_queued_until_it_is_ready() -> None:
    records, publisher = Records.open(":memory:"), Publisher()
    for request_id in ("r1", "r2"):  # a second request queues the job again, changes nothing
        record = await request_invoice(
            AsyncRecords(records),
            publisher,
            Names(),
            "acc_1",
            "2025-01",
            request_id=request_id,  # type: ignore[arg-type]
        )
        assert (record.id, record.status, record.period) == (
            "inv-acc_1-2025-01",
            "pending",
            "2025-01",
        )
    assert records.invoice("acc_1", "inv-acc_1-2025-01") is not None
    job = InvoiceJob(account="acc_1", period="2025-01", invoice="inv-acc_1-2025-01")
    assert publisher.published == [
        (job, "sms.invoice", "invoice-inv-acc_1-2025-01-r1"),
        (job, "sms.invoice", "invoice-inv-acc_1-2025-01-r2"),
    ]
    ready = InvoiceRecord(
        id="inv-acc_1-2025-01", account="acc_1", period="2025-01", status="ready", document=b"{}"
    )
    records.save_invoice(ready, 1.0)
    record = await request_invoice(
        AsyncRecords(records),
        publisher,
        Names(),
        "acc_1",
        "2025-01",
        request_id="r3",  # type: ignore[arg-type]
    )
    assert record.status == "ready"
    assert len(publisher.published) == 2  # a ready invoice is not built again


async def test_an_injected_sms_is_queued_as_the_carriers() -> None:
    publisher = Publisher()
    message = await inject_inbound(
        publisher,  # type: ignore[arg-type]
        Names(),
        carrier="sim",
        sender="+33611111111",
        to="+33700000000",
        text="STOP",
    )
    assert message.id.startswith("in-")
    assert (message.sender, message.to, message.text, message.carrier) == (
        "+33611111111",
        "+33700000000",
        "STOP",
        "sim",
    )
    assert publisher.published == [(message, "sms.inbound", message.id)]
    assert isinstance(message, InboundSms)
    with pytest.raises(InvalidNumber, match=r"^to: "):
        await inject_inbound(
            publisher,  # type: ignore[arg-type]
            Names(),
            carrier="sim",
            sender="+33611111111",
            to="0700",
            text="STOP",
        )
    assert len(publisher.published) == 1
