"""`limits`' in-memory storage without its expiry threads.

`limits.storage.MemoryStorage` (5.x) expires old entries on a `threading.Timer` of 10 ms,
and starts a new one from whichever call finds the last one finished: under traffic, a
new thread about every 10 ms. `Thread.start()` waits until the new thread runs, and the
token and heartbeat limits are counted on the event loop, so under load every request
waited behind thread start-ups fighting for the GIL: stalls of 5-7 s for every route
(py-spy dumps of replicas under bench/api_load, at a third of a core busy).

`LazyExpiryMemoryStorage` expires inline instead, at most once per `EXPIRY_EVERY`
seconds, in the caller that comes first (the sweep is a pass over the keys in memory).
Limits are unaffected: windows are computed from entry times, expiry only frees memory."""

from __future__ import annotations

import threading
import time

from limits.storage import MemoryStorage

EXPIRY_EVERY = 1.0


class LazyExpiryMemoryStorage(MemoryStorage):
    """MemoryStorage whose expiry runs inline, never on a thread it starts."""

    def __init__(self) -> None:
        super().__init__()  # starts the library's one 10 ms timer, once
        self._next_sweep = 0.0
        self._sweeping = threading.Lock()

    # MemoryStorage calls `self.__schedule_expiry()` on every count: inside that class the
    # name is mangled to this one, which replaces it.
    def _MemoryStorage__schedule_expiry(self) -> None:  # noqa: N802 (the mangled name)
        now = time.monotonic()
        if now < self._next_sweep or not self._sweeping.acquire(blocking=False):
            return
        try:
            self._next_sweep = now + EXPIRY_EVERY
            self._MemoryStorage__expire_events()  # type: ignore[attr-defined]
        finally:
            self._sweeping.release()
