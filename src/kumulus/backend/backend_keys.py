"""The platform's keys: one set for every backend replica of a database.

Four roles: `backend` (signs every call to an agent; each agent pins its address),
`payout` and `anchor` (send payouts and anchors on chain) and `deposit` (where deposits
land: a key, or a cold address whose key is not on the backend). Replicas read them from
files (the settings' `*_key_file`, e.g. systemd credentials) and must all hold the same:
a replica that made its own key would sign calls that agents refuse, and would pay from
or watch another address.

So the first process to use a key records its public address in the database
(`backend_keys`), and every start compares: a replica whose key file holds another key,
or that has no key file while the database has an address recorded, refuses to start
(`KeysMismatchError`) instead of making a key. A key file is made only while the database
has no address for its role (a new platform), and never replaced: processes starting
together on a shared data directory all read the one file that was created first."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from substrateinterface import Keypair

from kumulus.backend.clock import utcnow
from kumulus.backend.db import Database, upsert_insert
from kumulus.backend.models import BackendKey
from kumulus.core.errors import ConflictError
from kumulus.core.signing import create_secret_file, load_keypair, new_mnemonic

log = logging.getLogger(__name__)

BACKEND = "backend"
PAYOUT = "payout"
ANCHOR = "anchor"
DEPOSIT = "deposit"

# The setting that names each role's key file, for messages an operator acts on.
SETTING = {
    BACKEND: "KUMULUS_BACKEND_KEY_FILE",
    PAYOUT: "KUMULUS_BACKEND_PAYOUT_KEY_FILE",
    ANCHOR: "KUMULUS_BACKEND_ANCHOR_KEY_FILE",
    DEPOSIT: "KUMULUS_BACKEND_DEPOSIT_KEY_FILE",
}


class KeysMismatchError(ConflictError):
    """This process's key for a role is not the one the database recorded (or it has
    none): it must not start."""

    code = "backend_keys_mismatch"


@dataclass(frozen=True)
class Recorded:
    address: str
    recorded_at: str


def recorded(db: Database) -> dict[str, Recorded]:
    """The addresses recorded so far, by role."""
    with db.session() as s:
        return {
            row.role: Recorded(row.address, f"{row.recorded_at:%Y-%m-%d %H:%M:%S}")
            for row in s.scalars(select(BackendKey))
        }


def _record(db: Database, role: str, address: str) -> Recorded:
    """Record `address` for `role` unless one is recorded; the recorded one either way
    (concurrent first starts: the first INSERT wins, the others read it back)."""
    with db.session() as s:
        s.execute(
            upsert_insert(s, BackendKey)
            .values(role=role, address=address, recorded_at=utcnow())
            .on_conflict_do_nothing()
        )
        s.commit()
        row = s.get(BackendKey, role)
        assert row is not None
        if row.address == address:
            log.info("recorded the %s key's address %s in the database", role, address)
        return Recorded(row.address, f"{row.recorded_at:%Y-%m-%d %H:%M:%S}")


def _mismatch(role: str, what: str, pinned: Recorded, fix: str | None = None) -> KeysMismatchError:
    fix = fix or f"copy the {role} key file of the first replica and point {SETTING[role]} at it"
    return KeysMismatchError(
        f"refusing to start: {what}, but this database's {role} address is "
        f"{pinned.address} (recorded {pinned.recorded_at} UTC). Every backend replica of "
        f"one database must use the same keys: {fix}."
    )


def key(db: Database, role: str, path: Path) -> Keypair:
    """The key of `role` from `path`, checked against (or recorded in) the database; made
    at `path` only when the database has no address for the role yet. Raises
    KeysMismatchError."""
    pinned = recorded(db).get(role)
    if not path.exists():
        if pinned is not None:
            raise _mismatch(role, f"the {role} key file {path} does not exist", pinned)
        if create_secret_file(path, new_mnemonic()):
            log.info("created the %s key %s (mode 0600)", role, path)
    keypair = load_keypair(path)
    if pinned is None:
        pinned = _record(db, role, keypair.ss58_address)
    if pinned.address != keypair.ss58_address:
        raise _mismatch(
            role,
            f"the {role} key in {path} has the address {keypair.ss58_address}",
            pinned,
        )
    return keypair


def address(db: Database, role: str, value: str) -> str:
    """A role held as a bare address (a cold deposit address), checked or recorded like
    a key. Raises KeysMismatchError."""
    pinned = recorded(db).get(role) or _record(db, role, value)
    if pinned.address != value:
        raise _mismatch(
            role,
            f"this replica's {role} address is {value}",
            pinned,
            "set the same KUMULUS_BACKEND_DEPOSIT_ADDRESS (or deposit key file) on each",
        )
    return value
