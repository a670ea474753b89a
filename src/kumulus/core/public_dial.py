"""Connections to addresses a stranger chose go to public addresses only.

A provider chooses its agent's `apiUrl`, and the backend calls it: without a check, that
is a request from inside the platform to wherever the provider likes (the cloud's
metadata service at 169.254.169.254, the database on 127.0.0.1, an internal network).
`PublicOnly` is an httpx transport that resolves the URL's host once per request, refuses
unless every address it resolves to is a public unicast address, and connects to the
address it checked (the request keeps its Host header, and TLS its SNI name and
certificate check), so a DNS name cannot answer "public" to the check and "private" to
the connection (DNS rebinding).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Awaitable, Callable

import anyio
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# host, port -> the addresses it resolves to
Resolver = Callable[[str, int], Awaitable[list[str]]]

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries and leads to (mapped, 6to4, NAT64)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def not_public(ip: IPAddress) -> str | None:
    """Why `ip` is not a public unicast address (loopback, private, link-local, multicast,
    unspecified, reserved, shared, documentation...), or None when it is one."""
    inner = _embedded_ipv4(ip)
    if inner is not None:
        reason = not_public(inner)
        return None if reason is None else f"{reason} (inside {ip})"
    for reason, flag in (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
    ):
        if flag:
            return f"{ip} is {reason}"
    if not ip.is_global:
        return f"{ip} is not a global address"
    return None


def named_not_public(host: str) -> str | None:
    """Why `host` (a URL's host) is not public when that shows without resolving it: an IP
    literal that is not, or `localhost`; None otherwise (a DNS name is checked when
    dialled)."""
    if host.lower().rstrip(".") == "localhost" or host.lower().endswith(".localhost"):
        return f"{host} is loopback"
    try:
        return not_public(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


class NotPublicError(httpx.ConnectError):
    """The host of a URL resolves to an address that is not public: nothing was dialled."""


async def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (an IP literal: itself)."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def public_address(host: str, port: int, resolver: Resolver = resolve) -> str:
    """The address to dial for `host`: its first, once every address it resolves to is
    public; NotPublicError otherwise (or when it resolves to nothing)."""
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    addresses = [str(literal)] if literal is not None else await resolver(host, port)
    if not addresses:
        raise NotPublicError(f"{host} resolves to no address")
    for address in addresses:
        reason = not_public(ipaddress.ip_address(address.split("%", 1)[0]))
        if reason is not None:
            shown = reason if literal is not None else f"{host} resolves to {reason}"
            raise NotPublicError(f"{shown}: only public addresses are called")
    return addresses[0]


class PublicOnly(httpx.AsyncBaseTransport):
    """An httpx transport that dials public addresses only (see the module), through
    `inner` (a plain AsyncHTTPTransport by default)."""

    def __init__(
        self, inner: httpx.AsyncBaseTransport | None = None, resolver: Resolver = resolve
    ) -> None:
        self._inner = inner or httpx.AsyncHTTPTransport()
        self._resolver = resolver

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        host = url.host
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            address = await public_address(host, port, self._resolver)
        except OSError as exc:  # socket.gaierror: no such name
            raise httpx.ConnectError(f"cannot resolve {host}: {exc}", request=request) from exc
        except NotPublicError as exc:
            raise NotPublicError(str(exc), request=request) from exc
        if url.scheme == "https":
            # The certificate is checked against the name, not the address dialled.
            request.extensions = {**request.extensions, "sni_hostname": host}
        request.url = url.copy_with(host=address)  # the Host header keeps the name
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()
