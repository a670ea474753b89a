"""Who is calling, by address: the TCP peer, or what a trusted proxy says the peer was.

`X-Forwarded-For` is anyone's to write, so it is read only when the peer is one of the
configured proxies (`KUMULUS_BACKEND_TRUSTED_PROXIES`), and then from the right: each
trusted proxy appends the address it saw, so the rightmost entry that is not itself a
trusted proxy is the first address no trusted party vouches for beyond, the client's.
Entries left of it were written by the client and are ignored."""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

from starlette.requests import HTTPConnection

Network = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address


def parse_networks(values: Sequence[str]) -> tuple[Network, ...]:
    return tuple(ip_network(v.strip(), strict=False) for v in values)


def _address(text: str) -> Address | None:
    try:
        return ip_address(text.strip())
    except ValueError:
        return None


def _trusted(address: Address | None, proxies: Sequence[Network]) -> bool:
    return address is not None and any(address in net for net in proxies)


def client_ip(connection: HTTPConnection, proxies: Sequence[Network]) -> str:
    """The caller's address as text ("unknown" when the server was given none). A header
    entry that is not an IP address stops the walk: the last trusted hop is the answer."""
    peer_text = connection.client.host if connection.client else "unknown"
    peer = _address(peer_text)
    if not _trusted(peer, proxies):
        return peer_text
    hops = [h for h in ",".join(connection.headers.getlist("x-forwarded-for")).split(",") if h]
    caller: str = peer_text
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            break
        caller = str(address)
        if not _trusted(address, proxies):
            break
    return caller


def limit_key(ip: str) -> str:
    """What a per-IP limit counts `ip` as: an IPv6 client by its /64 (the least a
    subscriber is given: counting each address would let one client take a fresh one per
    request), an IPv4-mapped IPv6 address as its IPv4 address, anything else as itself."""
    address = _address(ip)
    if isinstance(address, IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(IPv6Network((address, 64), strict=False))
    return ip
