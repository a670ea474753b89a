"""Ctrl-C ends the CLI's waiting loops even when Python drops its KeyboardInterrupt.

Python raises the interrupt wherever the main thread is; inside a finaliser (an HTTP
connection or socket being collected) it is printed as "Exception ignored" and dropped.
`kumulus vm logs --follow` then slept on as if the key was never pressed (seen twice
under the full unit suite). The loops pause with `interrupts.sleep`, which remembers the
key press."""

from __future__ import annotations

import signal
import time

import pytest

from kumulus.cli import interrupts


class _CollectedDuringCtrlC:
    """Ctrl-C lands while this is collected: its KeyboardInterrupt is dropped."""

    def __del__(self) -> None:
        signal.raise_signal(signal.SIGINT)
        sum(range(1000))  # the interrupt is raised here, in the finaliser


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_dropped_ctrl_c_ends_the_next_pause_at_once() -> None:
    dropped = False
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt), interrupts.watch():
        _CollectedDuringCtrlC()  # collected at once: the interrupt is dropped
        dropped = True  # (not reached if it had been raised here)
        interrupts.sleep(20)
    assert dropped
    assert time.monotonic() - started < 5


def test_a_ctrl_c_during_a_pause_ends_it() -> None:
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt), interrupts.watch():
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        previous = signal.signal(signal.SIGALRM, lambda *_: signal.raise_signal(signal.SIGINT))
        try:
            interrupts.sleep(20)
        finally:
            signal.signal(signal.SIGALRM, previous)
    assert time.monotonic() - started < 5


def test_outside_a_watch_the_previous_handler_is_back_and_pauses_are_plain() -> None:
    before = signal.getsignal(signal.SIGINT)
    with interrupts.watch():
        assert signal.getsignal(signal.SIGINT) is not before
    assert signal.getsignal(signal.SIGINT) is before
    started = time.monotonic()
    interrupts.sleep(0.2)  # nothing remembered from the watch above
    assert time.monotonic() - started >= 0.2
