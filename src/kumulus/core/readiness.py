"""`/readyz` of both apps: named probes (the database, the chain, the engine), each run on
its own thread with a deadline, so a dependency that hangs makes the process not ready
within `timeout` instead of hanging the probe. `/healthz` stays liveness only.

Not ready is a 503 (`UnavailableError`, code `not_ready`) whose `fields` name each failed
check (`loc` = ["checks", name]). The probe is public (load balancers call it), so the
body gives the failure's kind only (`OperationalError`, `ChainError`, a timeout); its
message, which may name internal addresses, goes to the log."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from kumulus.core.errors import FieldProblem, UnavailableError

log = logging.getLogger(__name__)
OK = "ok"


@dataclass(frozen=True)
class Check:
    """`probe` returns when the dependency works and raises when it does not. One probe of
    a check runs at a time: while one is still running (a dependency that hangs), callers
    are answered at once that it is, so anonymous callers cannot pile up threads."""

    name: str
    probe: Callable[[], object]
    running: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)


def _reason(name: str, exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    log.warning("not ready: %s: %s: %s", name, type(exc).__name__, text[0] if text else "")
    return type(exc).__name__


def run_checks(checks: list[Check], timeout: float = 5.0) -> dict[str, str]:
    """Each check's outcome: "ok" or why not. Probes run in parallel; one that has not
    returned by `timeout` seconds fails (its daemon thread is left to finish, and until it
    does the check fails at once without another probe)."""
    results: dict[str, str] = {}
    lock = threading.Lock()

    def run(check: Check) -> None:
        try:
            check.probe()
            outcome = OK
        except Exception as exc:  # any failure of a dependency is "not ready"
            outcome = _reason(check.name, exc)
        finally:
            check.running.release()
        with lock:
            results[check.name] = outcome

    threads = []
    for check in checks:
        if check.running.acquire(blocking=False):
            threads.append(threading.Thread(target=run, args=(check,), daemon=True))
        else:
            results[check.name] = "its previous probe is still running"
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)  # all started together: the slowest bounds the total
    with lock:
        return {c.name: results.get(c.name, f"no answer within {timeout:g} s") for c in checks}


def ready(checks: list[Check], timeout: float = 5.0) -> Mapping[str, object]:
    """The /readyz body when every check passes; UnavailableError naming the failed ones."""
    results = run_checks(checks, timeout)
    failed = {name: why for name, why in results.items() if why != OK}
    if failed:
        raise UnavailableError(
            "not ready: " + "; ".join(f"{name}: {why}" for name, why in failed.items()),
            code="not_ready",
            fields=[FieldProblem(("checks", name), why) for name, why in failed.items()],
        )
    return {"ready": True, "checks": results}
