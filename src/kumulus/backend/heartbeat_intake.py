"""The threads that verify heartbeats, apart from every other route's.

The event loop hands each heartbeat over with one `put` on a queue that these threads
drain; nothing else per heartbeat crosses threads on the way in (the writer answers on
the loop once per batch: backend/heartbeats.py). A ThreadPoolExecutor made a Future, a
work item and a Condition per heartbeat, and woke a thread for each: a sixth of the
handler's CPU (py-spy, bench/heartbeats). sr25519 verification holds the GIL, so threads
add no parallelism within a process; a few keep one slow heartbeat from stalling the
rest. Replicas (processes) are what scale it."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class HeartbeatIntake:
    """Runs `handle(*item)` for every submitted item on one of `threads` threads, in
    arrival order per thread. `handle` must answer its caller itself (it never raises
    here: an exception is logged and dropped, its caller's wait then times out)."""

    def __init__(
        self, handle: Callable[..., None], threads: int, name: str = "heartbeat-verify"
    ) -> None:
        self._handle = handle
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True)
            for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, *item: Any) -> None:
        """Queue `item` for a thread; RuntimeError once closed (the app shutting down)."""
        if self._closed:
            raise RuntimeError("the heartbeat intake is closed")
        self._queue.put(item)

    def close(self, timeout: float = 5.0) -> None:
        """Handle what is queued, then stop the threads."""
        self._closed = True
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self._handle(*item)
            except Exception:
                log.exception("a heartbeat could not be handled")
