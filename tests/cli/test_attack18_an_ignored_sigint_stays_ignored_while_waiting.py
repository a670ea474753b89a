"""A CLI started with SIGINT ignored keeps ignoring it in its waiting loops.

(Attacker review attack18, 2026-11-30; fixed: watch() takes Ctrl-C over only from
Python's own handler.)

A shell without job control (any `sh` script) starts its background commands with
SIGINT and SIGQUIT ignored (POSIX, "asynchronous lists"), and so do supervisors that
want a child to outlive a Ctrl-C meant for its parent; Python keeps that disposition
(signal.getsignal(SIGINT) is SIG_IGN). `interrupts.watch()` (cli/interrupts.py) replaces
whatever handler is there with its own, so `kumulus vm logs --follow ... &` in a script,
or `kumulus vm create` waiting in one, is ended by the Ctrl-C the user meant for the
script's foreground command: a follow stops (exit 0, its log file silently ends), a wait
raises KeyboardInterrupt. Before this diff `time.sleep` under SIG_IGN never saw it.

Fix: in `watch()`, install `_on_sigint` only when the current handler is Python's
`signal.default_int_handler` (leave SIG_IGN, SIG_DFL and an embedding program's own
handler alone); also restore with `signal.signal` only when `previous` is not None (a
handler installed from C is reported as None, and `signal.signal(SIGINT, None)` raises
TypeError in the finally, hiding the loop's own exception)."""

from __future__ import annotations

import signal
import time

from kumulus.cli import interrupts


def test_sigint_ignored_by_the_parent_does_not_end_a_watched_wait() -> None:
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        interrupted = False
        started = time.monotonic()
        try:
            with interrupts.watch():
                signal.raise_signal(signal.SIGINT)  # the script's Ctrl-C reaches its group
                interrupts.sleep(0.3)
        except KeyboardInterrupt:
            interrupted = True
        assert not interrupted, "a SIGINT the process was told to ignore ended the wait"
        assert time.monotonic() - started >= 0.3
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)
