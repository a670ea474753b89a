"""The text a provider's wallet signs to let one host's own key speak for it.

`kumulus/delegation/v1: host <host id> may sign with key <ss58 address> from <RFC 3339>
until <RFC 3339>`: readable in a wallet's signing prompt, and exact, so the backend and the
host build the same bytes. `from` is when the text was made: the backend accepts a
delegation only shortly after it was made and never one made before the provider's wallet
was last linked, so a text someone once saw cannot be replayed after a re-link
(backend/host_keys.py). The agent (`kumulus agent delegate`), the CLI and the console all
use this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from kumulus.core.signing import Domain, SignatureError, public_key_of, wallet_text

DEFAULT_DAYS = 365
_TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_HOST_KEY = r"host (?P<host>[0-9a-z]{1,32}) may sign with key (?P<key>[1-9A-HJ-NP-Za-km-z]{40,60})"
_TEXT = re.compile(rf"{_HOST_KEY} from (?P<issued>{_TIME}) until (?P<until>{_TIME})")
# Texts made before they carried when they were made: refused with how to make a new one.
_UNDATED = re.compile(rf"{_HOST_KEY} until {_TIME}")


@dataclass(frozen=True)
class Delegation:
    host_id: str
    host_key: str
    issued_at: datetime
    expires_at: datetime


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(_FORMAT)


def delegation_text(
    host_id: str, host_key: str, expires_at: datetime, issued_at: datetime | None = None
) -> str:
    """The exact message the wallet signs (behind the DELEGATION tag), made at `issued_at`
    (now by default; to the second)."""
    issued = _stamp(issued_at or datetime.now(UTC))
    return wallet_text(
        Domain.DELEGATION,
        f"host {host_id} may sign with key {host_key} from {issued} until {_stamp(expires_at)}",
    )


def default_expiry(now: datetime | None = None) -> datetime:
    """A year from now, to the second."""
    now = now or datetime.now(UTC)
    return (now + timedelta(days=DEFAULT_DAYS)).replace(microsecond=0)


def parse_delegation(message: str) -> Delegation:
    """What a delegation text says; SignatureError (its reason says how to fix it) when it
    is not exactly one, or is one of the older texts that do not say when they were made."""
    prefix = f"{Domain.DELEGATION.value}: "
    body = message.removeprefix(prefix) if message.startswith(prefix) else None
    match = _TEXT.fullmatch(body) if body is not None else None
    if match is None:
        if body is not None and _UNDATED.fullmatch(body):
            raise SignatureError(
                "this delegation text does not say when it was made (an older form): make a "
                "new one (on the host: kumulus agent delegate; or sign the text of "
                "GET /v1/provider/hosts/<id>/delegation, or the provider console's)"
            )
        raise SignatureError(
            "not a delegation text (kumulus/delegation/v1: host ... from ... until ...)"
        )
    public_key_of(match["key"])
    issued = datetime.strptime(match["issued"], _FORMAT).replace(tzinfo=UTC)
    expires = datetime.strptime(match["until"], _FORMAT).replace(tzinfo=UTC)
    return Delegation(match["host"], match["key"], issued, expires)
