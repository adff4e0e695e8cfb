"""The addresses a customer's webhook may not reach, and resolving a host to checked addresses."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from rabbitry.platform._addresses import (
    AddressRefused,
    UnresolvedHost,
    allowed_addresses,
    is_local_name,
    refusal,
)

from .conftest import FakeDns

REFUSED_V4 = {
    "0.0.0.0/8": "unspecified",
    "10.0.0.0/8": "private",
    "100.64.0.0/10": "private",
    "127.0.0.0/8": "loopback",
    "169.254.0.0/16": "link-local",
    "172.16.0.0/12": "private",
    "192.168.0.0/16": "private",
    "224.0.0.0/4": "multicast",
    "255.255.255.255/32": "broadcast",
}
REFUSED_V6 = {
    "::/128": "unspecified",
    "::1/128": "loopback",
    "fc00::/7": "unique-local",
    "fe80::/10": "link-local",
    "fec0::/10": "site-local",
    "ff00::/8": "multicast",
}


def _in(network: IPv4Network | IPv6Network) -> st.SearchStrategy[int]:
    return st.integers(int(network.network_address), int(network.broadcast_address))


@given(
    st.sampled_from(sorted(REFUSED_V4)).flatmap(
        lambda n: _in(IPv4Network(n)).map(lambda value: (n, IPv4Address(value)))
    )
)
def test_every_refused_ipv4_address_is_refused_as_its_kind(case: tuple[str, IPv4Address]) -> None:
    network, address = case
    assert refusal(address) == REFUSED_V4[network]
    # The same address reached through IPv6 (mapped, NAT64, 6to4) is refused the same way.
    value = int(address)
    sixtofour = f"2002:{value >> 16:x}:{value & 0xFFFF:x}::1"
    for wrapped in (f"::ffff:{address}", f"64:ff9b::{address}", sixtofour):
        assert refusal(ip_address(wrapped)) == REFUSED_V4[network], wrapped


@given(
    st.sampled_from(sorted(REFUSED_V6)).flatmap(
        lambda n: _in(IPv6Network(n)).map(lambda value: (n, IPv6Address(value)))
    )
)
def test_every_refused_ipv6_address_is_refused_as_its_kind(case: tuple[str, IPv6Address]) -> None:
    network, address = case
    assert refusal(address) == REFUSED_V6[network]


LISTED_V4 = [IPv4Network(n) for n in REFUSED_V4]


@given(st.integers(0, 2**32 - 1).map(IPv4Address))
def test_an_ipv4_address_outside_the_refused_networks_is_allowed(address: IPv4Address) -> None:
    listed = any(address in network for network in LISTED_V4)
    assert (refusal(address) is None) == (not listed)
    assert refusal(ip_address(f"::ffff:{address}")) == refusal(address)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("93.184.216.34", None),
        ("203.0.113.7", None),  # documentation addresses are not private
        ("2606:4700::1111", None),
        ("::ffff:8.8.8.8", None),
        ("169.254.169.254", "link-local"),  # the usual cloud metadata service
        ("100.100.100.200", "private"),  # another cloud's, in the shared address space
        ("fe80::1%eth0", "link-local"),
        ("::127.0.0.1", "loopback"),  # IPv4-compatible
        ("::ffff:10.0.0.1", "private"),
    ],
)
def test_named_addresses(text: str, kind: str | None) -> None:
    assert refusal(ip_address(text)) == kind


@pytest.mark.parametrize(
    ("name", "local"),
    [
        ("localhost", True),
        ("LocalHost.", True),
        ("api.localhost", True),
        ("localhost.example.com", False),
        ("notlocalhost", False),
    ],
)
def test_localhost_and_the_names_under_it_are_loopback_by_name(name: str, local: bool) -> None:
    assert is_local_name(name) is local


async def test_an_ip_literal_is_checked_without_a_resolver(dns: FakeDns) -> None:
    assert await allowed_addresses("93.184.216.34", 80, allow_private=False) == ["93.184.216.34"]
    assert await allowed_addresses("[2606:4700::1]", 443, allow_private=False) == ["2606:4700::1"]
    with pytest.raises(AddressRefused, match=r"^127\.0\.0\.1 is a loopback address$"):
        await allowed_addresses("127.0.0.1", 80, allow_private=False)
    with pytest.raises(AddressRefused, match=r"^::ffff:127\.0\.0\.1 is a loopback address$"):
        await allowed_addresses("[::ffff:127.0.0.1]", 80, allow_private=False)
    assert dns.asked == {}


async def test_a_name_is_refused_if_any_of_its_addresses_is(dns: FakeDns) -> None:
    dns.answers["mixed.example"] = ["93.184.216.34", "10.0.0.7"]
    dns.answers["public.example"] = ["93.184.216.34", "2606:4700::1"]
    with pytest.raises(AddressRefused) as refused:
        await allowed_addresses("mixed.example", 443, allow_private=False)
    assert str(refused.value) == "'mixed.example' resolves to 10.0.0.7, a private address"
    assert await allowed_addresses("public.example", 443, allow_private=False) == [
        "93.184.216.34",
        "2606:4700::1",
    ]


async def test_numeric_forms_resolve_to_the_address_they_mean(dns: FakeDns) -> None:
    for host in ("2130706433", "127.1", "0x7f.1"):
        with pytest.raises(AddressRefused, match=r"resolves to 127\.0\.0\.1, a loopback"):
            await allowed_addresses(host, 80, allow_private=False)


async def test_localhost_is_refused_without_asking_the_resolver(dns: FakeDns) -> None:
    dns.answers["localhost"] = ["93.184.216.34"]  # whatever a resolver would say
    with pytest.raises(AddressRefused, match=r"^'localhost' is a loopback name$"):
        await allowed_addresses("localhost", 80, allow_private=False)
    assert dns.asked == {}


async def test_allowing_private_addresses_refuses_nothing(dns: FakeDns) -> None:
    dns.answers["intranet.example"] = ["10.0.0.7"]
    assert await allowed_addresses("intranet.example", 80, allow_private=True) == ["10.0.0.7"]
    assert await allowed_addresses("127.0.0.1", 80, allow_private=True) == ["127.0.0.1"]


async def test_a_name_that_does_not_resolve(dns: FakeDns) -> None:
    with pytest.raises(UnresolvedHost, match=r"^'nowhere\.example' does not resolve"):
        await allowed_addresses("nowhere.example", 80, allow_private=False)


async def test_the_caller_bounds_a_slow_resolver_and_the_loop_never_waits(
    dns: FakeDns, autojump_clock: trio.testing.MockClock
) -> None:
    dns.hanging.add("slow.example")
    with trio.move_on_after(2.0) as scope:
        await allowed_addresses("slow.example", 80, allow_private=False)
    assert scope.cancelled_caught
    assert trio.current_time() == pytest.approx(2.0)
