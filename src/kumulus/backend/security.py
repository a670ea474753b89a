"""Passwords (argon2id) and bearer tokens (random, stored as SHA-256).

Argon2id with OWASP's parameters (19 MiB, 2 passes, 1 lane): about 30 ms of one core per
hash here. The library's default (64 MiB, 3 passes, 4 lanes) cost 240 ms of CPU, so a
flood of wrong passwords within the per-IP limits took both cores of a small backend away
from everyone else (bench/api_load). Hashes made with other parameters still verify, and
are made again with these at the next successful log-in.

Each hash or verification takes its memory for a moment, so this process runs at most
`configure_hashing(slots)` at once: a caller that gets no slot within the wait is refused
(`UnavailableError` code `busy`, 503 with Retry-After) rather than queued, so a flood of
logins costs a bounded amount of memory and answers fast. The bound is per process (it
is this process's memory), shared by every app in it."""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Callable
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from kumulus.core.errors import UnavailableError

_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# Verifying against this keeps unknown-email logins as slow as wrong-password ones.
_DUMMY_HASH = _hasher.hash("kumulus-timing-equaliser")
_T = TypeVar("_T")


class _Slots:
    def __init__(self, slots: int, wait: float) -> None:
        self.semaphore = threading.BoundedSemaphore(slots)
        self.wait = wait


_slots = _Slots(4, 1.0)


def configure_hashing(slots: int, wait: float) -> None:
    """At most `slots` hashes at once in this process; a caller waits `wait` seconds at
    most for one (hashes already running keep the slots they took)."""
    global _slots
    _slots = _Slots(slots, wait)


def _bounded(work: Callable[[], _T]) -> _T:
    slots = _slots
    if not slots.semaphore.acquire(timeout=slots.wait):
        raise UnavailableError(
            "too many log-ins and sign-ups at once; retry in a few seconds",
            code="busy",
            retry_after=2,
        )
    try:
        return work()
    finally:
        slots.semaphore.release()


def hash_password(password: str) -> str:
    return _bounded(lambda: _hasher.hash(password))


def verify_password(password_hash: str | None, password: str) -> bool:
    def verify() -> bool:
        try:
            return (
                _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
            )
        except (VerificationError, InvalidHashError):
            return False

    return _bounded(verify)


def needs_rehash(password_hash: str) -> bool:
    """Whether a verified hash was made with other parameters than today's."""
    return _hasher.check_needs_rehash(password_hash)


def new_token(kind: str) -> tuple[str, str]:
    """A fresh bearer token and the hash stored for it. `kind` prefixes it ('kmt', 'kmh')."""
    token = f"{kind}_{secrets.token_urlsafe(32)}"
    return token, hash_token(token)


def hash_token(token: str) -> str:
    # Tokens carry 256 random bits: a fast hash is enough (nothing to brute-force).
    return hashlib.sha256(token.encode()).hexdigest()
