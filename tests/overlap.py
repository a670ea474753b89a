"""A job body that records how many copies of itself ran at once (for lease tests)."""

from __future__ import annotations

import threading
import time


class OverlapProbe:
    """Call it as a job: `runs` counts calls, `most` is the largest number at once."""

    def __init__(self, hold: float) -> None:
        self.hold = hold
        self.runs = 0
        self.most = 0
        self._inside = 0
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            self._inside += 1
            self.most = max(self.most, self._inside)
            self.runs += 1
        time.sleep(self.hold)
        with self._lock:
            self._inside -= 1
