"""The URLs customers give: well formed, at most 2,048 characters, public unless allowed."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from rabbitry.gateway import InvalidField
from rabbitry.platform._customer_urls import (
    MAX_URL_LENGTH,
    RESOLVE_TIMEOUT,
    check_customer_url,
    parse_customer_url,
)

from .conftest import FakeDns

WELL_FORMED = [
    ("https://hooks.example.com/sms", ("hooks.example.com", 443)),
    ("http://hooks.example.com:8080/sms?token=a%20b#x", ("hooks.example.com", 8080)),
    ("https://user:pass@hooks.example.com/", ("hooks.example.com", 443)),
    ("https://xn--bcher-kva.example/", ("xn--bcher-kva.example", 443)),
    ("http://93.184.216.34/", ("93.184.216.34", 80)),
    ("http://[2606:4700::1]:81/", ("2606:4700::1", 81)),
    ("http://hooks.example.com./", ("hooks.example.com.", 80)),
]


@pytest.mark.parametrize(("url", "parsed"), WELL_FORMED)
def test_a_well_formed_url_parses_to_its_host_and_port(url: str, parsed: tuple[str, int]) -> None:
    assert parse_customer_url("callback_url", url) == parsed


MALFORMED = [
    ("http://[::1\n", "must be printable ASCII without spaces or control characters"),
    ("http://example.com/\n", "must be printable ASCII without spaces or control characters"),
    ("http://exa mple.com/", "must be printable ASCII without spaces or control characters"),
    ("http://example.com/\x00", "must be printable ASCII without spaces or control characters"),
    ("http://example.com/\t", "must be printable ASCII without spaces or control characters"),
    ("http://bücher.example/", "must be printable ASCII without spaces or control characters"),
    ("", "must be printable ASCII without spaces or control characters"),
    ("ftp://example.com/", "must be an absolute http:// or https:// URL"),
    ("HTTP://example.com/", "must be an absolute http:// or https:// URL"),
    ("//example.com/x", "must be an absolute http:// or https:// URL"),
    ("http:example.com", "must be an absolute http:// or https:// URL"),
    ("http://", "must name a host"),
    ("http:///x", "must name a host"),
    ("http://[::1", "must name a host"),
    ("http://[::1]x/", "must have a port"),
    ("http://[v1.x]/", "must name a host"),
    ("http://[fe80::1%25eth0]/", "must name a host"),
    ("http://[10.0.0.1]/", "must name a host"),
    ("http://a..b/", "must name a host"),
    ("http://-a.example/", "must name a host"),
    ("http://ex%41mple.com/", "must name a host"),
    ("http://" + "a" * 64 + ".example/", "must name a host"),
    ("http://example.com:/", "must have a port from 1 to 65535"),
    ("http://example.com:0/", "must have a port from 1 to 65535"),
    ("http://example.com:65536/", "must have a port from 1 to 65535"),
    ("http://example.com:80:80/", "must have a port from 1 to 65535"),
    ("http://example.com:http/", "must have a port from 1 to 65535"),
    ("https://example.com/" + "a" * MAX_URL_LENGTH, "must be at most 2,048 characters (got 2,068)"),
]


@pytest.mark.parametrize(("url", "rule"), MALFORMED)
def test_a_malformed_url_is_refused_in_one_sentence_naming_the_field(url: str, rule: str) -> None:
    with pytest.raises(InvalidField) as refused:
        parse_customer_url("webhook_url", url)
    assert refused.value.field == "webhook_url"
    assert str(refused.value).startswith(f"webhook_url {rule}")
    assert "\n" not in str(refused.value)  # the URL is shown quoted, escapes and all
    assert len(str(refused.value)) < 300  # and shortened


@given(st.text(min_size=1, max_size=60))
def test_anything_parse_accepts_is_printable_http_that_httpx_reads_too(text: str) -> None:
    import httpx

    for url in (text, f"http://{text}", f"https://example.com/{text}"):
        try:
            _, port = parse_customer_url("callback_url", url)
        except InvalidField:
            continue
        assert url.startswith(("http://", "https://"))
        assert all("!" <= char <= "~" for char in url)
        assert 1 <= port <= 65535
        assert httpx.URL(url).host  # the callbacks worker can use it


async def test_a_url_that_is_or_resolves_to_a_private_address_is_refused(dns: FakeDns) -> None:
    dns.answers["rebind.example"] = ["10.0.0.7"]
    cases = {
        "http://127.0.0.1:9/internal/admin": "127.0.0.1 is a loopback address",
        "http://localhost:8080/x": "'localhost' is a loopback name",
        "http://[::ffff:127.0.0.1]/x": "::ffff:127.0.0.1 is a loopback address",
        "http://169.254.169.254/latest/": "169.254.169.254 is a link-local address",
        "http://2130706433/": "'2130706433' resolves to 127.0.0.1, a loopback address",
        "https://rebind.example/x": "'rebind.example' resolves to 10.0.0.7, a private address",
    }
    for url, why in cases.items():
        with pytest.raises(InvalidField) as refused:
            await check_customer_url("callback_url", url, allow_private=False)
        assert str(refused.value) == f"callback_url must point to a public address ({why})"
        assert refused.value.field == "callback_url"
        # Allowed by the config, the same URL is taken as it is.
        assert await check_customer_url("callback_url", url, allow_private=True) == url


async def test_a_public_url_is_taken(dns: FakeDns) -> None:
    dns.answers["hooks.example.com"] = ["93.184.216.34", "2606:4700::1"]
    url = "https://hooks.example.com/sms"
    assert await check_customer_url("callback_url", url, allow_private=False) == url


async def test_a_name_that_does_not_resolve_now_is_taken_and_checked_when_called(
    dns: FakeDns,
) -> None:
    url = "https://not-yet.example/sms"
    assert await check_customer_url("webhook_url", url, allow_private=False) == url
    assert dns.asked == {"not-yet.example": 1}


async def test_a_slow_resolver_costs_the_request_at_most_the_resolve_timeout(
    dns: FakeDns, autojump_clock: trio.testing.MockClock
) -> None:
    dns.hanging.add("slow.example")
    url = "https://slow.example/sms"
    assert await check_customer_url("callback_url", url, allow_private=False) == url
    assert trio.current_time() == pytest.approx(RESOLVE_TIMEOUT)


async def test_a_malformed_url_is_refused_before_any_resolution(dns: FakeDns) -> None:
    with pytest.raises(InvalidField, match=r"^callback_url must be printable ASCII"):
        await check_customer_url("callback_url", "http://[::1\n", allow_private=True)
    assert dns.asked == {}


def test_a_refused_url_is_shown_without_its_user_password_or_query() -> None:
    with pytest.raises(InvalidField) as refused:
        parse_customer_url("callback_url", "ftp://me:hunter2@example.com/x?token=s3cret#f")
    assert str(refused.value) == (
        "callback_url must be an absolute http:// or https:// URL"
        " (got 'ftp://***@example.com/x?...')"
    )
