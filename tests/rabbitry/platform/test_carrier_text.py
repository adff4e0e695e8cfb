"""What a carrier sends is kept as the stores can hold it: a NUL (which PostgreSQL refuses in
text, so the report would be retried, then parked) becomes U+FFFD."""

from rabbitry.carriers import DeliveryEvent
from rabbitry.platform._carrier import _report


def test_a_delivery_report_with_a_nul_keeps_it_as_a_replacement_character() -> None:
    event = DeliveryEvent(carrier_id="c-\x00", status="undelivered", error="E\x001")
    report = _report("msg-1", event, "rest")
    assert (report.carrier_id, report.error) == ("c-\ufffd", "E\ufffd1")
