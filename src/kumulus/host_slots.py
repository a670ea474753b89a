"""How many calls this process makes to one provider's host at once.

A provider's agent may be slow on purpose; each call to it holds one of our threads until
its deadline. `HostSlots` bounds the calls in flight per host, so one host can hold at
most that many threads whatever it does, and the next call waits briefly for a slot, then
fails as busy (retried later like any failed call) instead of queueing forever.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache


class HostBusyError(Exception):
    """Every slot of the host stayed taken for the whole wait."""


class HostSlots:
    """At most `per_host` holders at once per host id; `hold` waits up to `wait` seconds
    for a slot, then raises HostBusyError. Thread-safe; one per process (`host_slots`)."""

    def __init__(self, per_host: int, wait: float) -> None:
        self.per_host = per_host
        self.wait = wait
        self._lock = threading.Lock()
        self._slots: dict[str, threading.BoundedSemaphore] = {}

    @contextmanager
    def hold(self, host_id: str) -> Iterator[float]:
        """Hold a slot of `host_id`; yields the seconds spent waiting for it."""
        with self._lock:
            slot = self._slots.setdefault(host_id, threading.BoundedSemaphore(self.per_host))
        started = time.monotonic()
        if not slot.acquire(timeout=self.wait):
            raise HostBusyError(f"{self.per_host} calls to host {host_id} are already running")
        try:
            yield time.monotonic() - started
        finally:
            slot.release()


@cache
def host_slots(per_host: int, wait: float) -> HostSlots:
    """This process's slots for these settings (the same object for every caller)."""
    return HostSlots(per_host, wait)
