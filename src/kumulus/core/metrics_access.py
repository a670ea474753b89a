"""Who may read a process's `/metrics`: callers on this machine (the connection's address
in the ASGI scope, never a header), and others that present the metrics token
(`Authorization: Bearer <token>`) kept in a file the operator gives (`metrics_token_file`),
for a Prometheus on another machine. Without a token file, loopback only."""

from __future__ import annotations

import hmac
from collections.abc import MutableMapping
from ipaddress import ip_address
from pathlib import Path
from typing import Any


def is_loopback(scope: MutableMapping[str, Any]) -> bool:
    """Whether the connection comes from this machine. The address is the server's view
    of the peer (behind uvicorn's proxy-header handling, which trusts only local proxies);
    no address, or one that is not an IP (a test client's name), is not loopback."""
    client = scope.get("client")
    if not client:
        return False
    try:
        return ip_address(str(client[0])).is_loopback
    except ValueError:
        return False


def read_token(path: Path | None) -> str | None:
    """The token in `path` (stripped), None without a file; an empty file is no token.
    Read at each check, so the operator can rotate it without a restart."""
    if path is None:
        return None
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        return None
    return token or None


def may_read(
    scope: MutableMapping[str, Any], authorization: str | None, token_file: Path | None
) -> bool:
    """Loopback callers always; others only with the exact token (compared in constant time)."""
    if is_loopback(scope):
        return True
    token = read_token(token_file)
    if token is None or not authorization:
        return False
    scheme, _, given = authorization.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )
