"""Job `deposits`: credit new deposits found on chain (one process at a time scans)."""

from __future__ import annotations

from kumulus.backend.deposits import DepositWatcher


def scan(watcher: DepositWatcher) -> int:
    return watcher.scan()
