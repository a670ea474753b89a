"""Choosing SSH ports for VMs from the configured range."""

from __future__ import annotations

import socket
from collections.abc import Iterable


def port_is_free(bind: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((bind, port))
        except OSError:
            return False
    return True


def choose_port(bind: str, low: int, high: int, taken: Iterable[int]) -> int | None:
    """Lowest port in [low, high] not used by a VM (running or not) and bindable right now.

    The caller holds the agent's create lock, so two creates never pick the same port; the
    bind test catches ports held by other programs on the host.
    """
    used = set(taken)
    for port in range(low, high + 1):
        if port not in used and port_is_free(bind, port):
            return port
    return None
