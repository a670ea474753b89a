"""Counting a rate limit starts no thread: `limits`' MemoryStorage starts a Timer thread
every ~10 ms of traffic, and a thread start waits for the thread to run, which stalled the
event loop (where token and heartbeat limits are counted) for seconds under load. The
storage still expires old entries, inline."""

from __future__ import annotations

import threading
import time

import pytest
from limits import parse
from limits.strategies import MovingWindowRateLimiter

from kumulus.backend import memory_counters
from kumulus.backend.memory_counters import LazyExpiryMemoryStorage


def test_thousands_of_counts_start_no_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    limiter = MovingWindowRateLimiter(LazyExpiryMemoryStorage())
    started: list[threading.Thread] = []
    real_start = threading.Thread.start

    def counting_start(self: threading.Thread) -> None:
        started.append(self)
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", counting_start)
    item = parse("1000000/minute")
    for n in range(3000):
        assert limiter.hit(item, "token", str(n % 50))
        if n % 500 == 0:
            time.sleep(0.02)  # the library's timer would have finished: it starts another
    assert started == []


def test_old_entries_are_still_expired(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory_counters, "EXPIRY_EVERY", 0.0)
    storage = LazyExpiryMemoryStorage()
    limiter = MovingWindowRateLimiter(storage)
    short = parse("5/second")
    for n in range(20):
        limiter.hit(short, "ip", str(n))
    assert sum(len(entries) for entries in storage.events.values()) == 20
    time.sleep(1.1)
    limiter.hit(short, "ip", "new")  # sweeps on its way
    left = {key: len(entries) for key, entries in storage.events.items() if entries}
    assert left == {"LIMITER/ip/new/5/1/second": 1}
    # The window itself is unchanged: 5 per second, then refused.
    assert [limiter.hit(short, "burst") for _ in range(6)] == [True] * 5 + [False]
