"""Is sshd really answering? A VM is "Running" only once its SSH-2.0 banner arrives."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import psutil


def probe_host(bind: str) -> str:
    """Where to connect to reach a port published on `bind`."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(bind, bind)  # noqa: S104


def default_public_host(bind: str) -> str:
    """What developers should ssh to when the provider did not say: the bind address, or
    for a wildcard bind the host's first non-loopback IPv4 outside Docker's bridges."""
    if bind not in ("0.0.0.0", "::"):  # noqa: S104
        return bind
    for name, addrs in psutil.net_if_addrs().items():
        if name == "lo" or name.startswith(("docker", "br-", "kmvm", "veth")):
            continue
        for addr in addrs:
            if addr.family == socket.AF_INET and not addr.address.startswith("127."):
                return str(addr.address)
    return "127.0.0.1"


def banner(host: str, port: int, timeout: float = 0.5) -> bytes | None:
    """The first line sshd sends, or None when nothing SSH-like answers in time."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            data = sock.recv(256)
    except OSError:
        return None
    return data if data.startswith(b"SSH-2.0") else None


def wait_for_banner(
    host: str,
    port: int,
    deadline: float,
    still_alive: Callable[[], bool],
    interval: float = 0.03,
) -> bool:
    """Poll until sshd answers (True), the deadline passes or `still_alive` says no (False).

    Docker's port proxy accepts connections before sshd listens and then closes them, so
    only the banner proves readiness, not a successful connect.
    """
    checks = 0
    while time.monotonic() < deadline:
        if banner(host, port, timeout=min(0.5, max(0.05, deadline - time.monotonic()))):
            return True
        checks += 1
        if checks % 10 == 0 and not still_alive():
            return False
        time.sleep(interval)
    return False
