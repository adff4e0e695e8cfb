"""The addresses a customer's webhook may reach: which the daemon refuses, and resolving a host to
the addresses it may connect to.

    refusal(ip_address("10.1.2.3"))          # "private"
    refusal(ip_address("::ffff:127.0.0.1"))  # "loopback": judged by the IPv4 address it reaches
    refusal(ip_address("93.184.216.34"))     # None
    with trio.move_on_after(2.0):
        await allowed_addresses("hooks.example.com", 443, allow_private=False)
        # ["93.184.216.34"]; raises AddressRefused, UnresolvedHost

Refused: loopback, private (RFC 1918, and the shared 100.64.0.0/10 where some clouds keep their
metadata service), link-local (169.254.169.254 is the usual metadata service), unique-local and
the old site-local, multicast and broadcast, unspecified ("this network", 0.0.0.0/8 and `::`). An
IPv6 address that carries an IPv4 one (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`,
NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) is judged by that IPv4 address. The name `localhost` and
the names under it are loopback without asking a resolver (RFC 6761).

A name is resolved by `trio.socket.getaddrinfo` (in a worker thread, so the trio loop never
waits on the resolver; the caller bounds the time with a cancel scope); numeric forms
(`2130706433`, `127.1`) resolve without DNS, to the address they mean. Every address the answer
holds must be allowed: one refused address refuses the name, since a connection may go to any of
them. The caller connects to an address returned here, never to a second resolution of the name
(a second answer could be another address: DNS rebinding).

With `allow_private=True` nothing is refused; names are still resolved (to connect).
"""

from __future__ import annotations

import ipaddress
import socket
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import trio

IpAddress = IPv4Address | IPv6Address

_IPV4: tuple[tuple[IPv4Network, str], ...] = tuple(
    (IPv4Network(network), kind)
    for network, kind in (
        ("0.0.0.0/8", "unspecified"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "private"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.168.0.0/16", "private"),
        ("224.0.0.0/4", "multicast"),
        ("255.255.255.255/32", "broadcast"),
    )
)
_IPV6: tuple[tuple[IPv6Network, str], ...] = tuple(
    (IPv6Network(network), kind)
    for network, kind in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("fc00::/7", "unique-local"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    )
)
_IPV4_COMPATIBLE = IPv6Network("::/96")
_NAT64 = IPv6Network("64:ff9b::/96")


class AddressRefused(ConnectionError):  # noqa: N818 - names what happened, like the stdlib's
    """A host that is, or resolves to, an address webhooks may not reach."""


class UnresolvedHost(ConnectionError):  # noqa: N818 - names what happened, like the stdlib's
    """A name the resolver did not turn into addresses (no such name, no answer in time)."""


def refusal(address: IpAddress) -> str | None:
    """What kind of refused address `address` is ("loopback", "private"...), or None."""
    if isinstance(address, IPv6Address):
        address = address.ipv4_mapped or address
    if isinstance(address, IPv4Address):
        return next((kind for network, kind in _IPV4 if address in network), None)
    address = IPv6Address(address.packed)  # without a scope id ("fe80::1%eth0")
    kind = next((kind for network, kind in _IPV6 if address in network), None)
    if kind is not None:
        return kind
    embedded = _embedded_ipv4(address)
    return None if embedded is None else refusal(embedded)


def _embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    """The IPv4 address an IPv6 one reaches by translation (6to4, NAT64, IPv4-compatible)."""
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or address in _IPV4_COMPATIBLE:
        return IPv4Address(int(address) & 0xFFFF_FFFF)
    return None


def is_local_name(host: str) -> bool:
    """Whether `host` is `localhost` or a name under it (loopback by definition, RFC 6761)."""
    name = host.lower().rstrip(".")
    return name == "localhost" or name.endswith(".localhost")


def ip_literal(host: str) -> IpAddress | None:
    """`host` as an IP address when it is written as one ("10.0.0.1", "::1"), else None."""
    try:
        return ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
    except ValueError:
        return None


async def allowed_addresses(host: str, port: int, *, allow_private: bool) -> list[str]:
    """The addresses of `host` to connect to, in the resolver's order, each one allowed.

    Raises:
        AddressRefused: `host` is, or resolves to, a refused address (unless `allow_private`).
        UnresolvedHost: the name does not resolve.
    """
    literal = ip_literal(host)
    if literal is not None:
        _check(literal, host, allow_private=allow_private)
        return [str(literal)]
    if is_local_name(host) and not allow_private:
        raise AddressRefused(f"{host!r} is a loopback name")
    addresses = await _resolve(host, port)
    for address in addresses:
        _check(address, host, allow_private=allow_private)
    return [str(address) for address in addresses]


def _check(address: IpAddress, host: str, *, allow_private: bool) -> None:
    kind = None if allow_private else refusal(address)
    if kind is None:
        return
    if ip_literal(host) is not None:
        raise AddressRefused(f"{host.removeprefix('[').removesuffix(']')} is {_a(kind)} address")
    raise AddressRefused(f"{host!r} resolves to {address}, {_a(kind)} address")


def _a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


async def _resolve(host: str, port: int) -> list[IpAddress]:
    try:
        infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:  # gaierror is an OSError; an IDNA failure
        raise UnresolvedHost(f"{host!r} does not resolve ({error})") from None
    answer: list[IpAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]))
        if address not in answer:
            answer.append(address)
    if not answer:
        raise UnresolvedHost(f"{host!r} resolves to no address")
    return answer
