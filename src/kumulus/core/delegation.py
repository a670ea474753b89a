"""The text a provider's wallet signs to let one host's own key speak for it.

`kumulus/delegation/v1: host <host id> may sign with key <ss58 address> until <RFC 3339>`:
readable in a wallet's signing prompt, and exact, so the backend and the host build the same
bytes. The agent (`kumulus agent delegate`), the CLI and the console all use this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from kumulus.core.signing import Domain, SignatureError, public_key_of, wallet_text

DEFAULT_DAYS = 365
_TEXT = re.compile(
    r"host (?P<host>[0-9a-z]{1,32}) may sign with key (?P<key>[1-9A-HJ-NP-Za-km-z]{40,60})"
    r" until (?P<until>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)"
)


@dataclass(frozen=True)
class Delegation:
    host_id: str
    host_key: str
    expires_at: datetime


def delegation_text(host_id: str, host_key: str, expires_at: datetime) -> str:
    """The exact message the wallet signs (behind the DELEGATION tag)."""
    until = expires_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return wallet_text(
        Domain.DELEGATION, f"host {host_id} may sign with key {host_key} until {until}"
    )


def default_expiry(now: datetime | None = None) -> datetime:
    """A year from now, to the second."""
    now = now or datetime.now(UTC)
    return (now + timedelta(days=DEFAULT_DAYS)).replace(microsecond=0)


def parse_delegation(message: str) -> Delegation:
    """What a delegation text says; SignatureError when it is not exactly one."""
    prefix = f"{Domain.DELEGATION.value}: "
    match = _TEXT.fullmatch(message.removeprefix(prefix)) if message.startswith(prefix) else None
    if match is None:
        raise SignatureError("not a delegation text (kumulus/delegation/v1: host ... until ...)")
    public_key_of(match["key"])
    expires = datetime.strptime(match["until"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return Delegation(match["host"], match["key"], expires)
