"""Ctrl-C in the CLI's waiting loops (following logs, waiting for a VM).

Python raises KeyboardInterrupt wherever the main thread is when SIGINT is handled. When
that is inside a finaliser (an HTTP connection or a socket being collected, which the
loops' requests leave behind), the exception is printed as "Exception ignored" and
dropped, and the loop slept on as if the key was never pressed: seen in `kumulus vm logs
--follow`. Inside `watch()`, Ctrl-C also sets a flag that `sleep` checks, so a dropped
interrupt still ends the loop at its next pause."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_pressed = threading.Event()


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    _pressed.set()
    signal.default_int_handler(signum, frame)  # raises KeyboardInterrupt here


@contextmanager
def watch() -> Iterator[None]:
    """While inside, Ctrl-C raises KeyboardInterrupt as usual and is remembered for
    `sleep`. Only when Ctrl-C would raise KeyboardInterrupt anyway (Python's own handler
    is in place) and on the main thread, the only one that takes signals: a process
    started with SIGINT ignored (a background command of a shell script) keeps ignoring
    it, and an embedding program's handler is left alone."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    signal.signal(signal.SIGINT, _on_sigint)
    _pressed.clear()
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _pressed.clear()


def sleep(seconds: float) -> None:
    """time.sleep, but KeyboardInterrupt at once when Ctrl-C was pressed inside `watch()`,
    during this pause or before it (its exception dropped by a finaliser)."""
    if _pressed.wait(seconds):
        raise KeyboardInterrupt
