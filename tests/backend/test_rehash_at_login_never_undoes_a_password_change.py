"""The upgrade of an old-parameter hash at log-in never writes over a password changed
while that log-in was verifying: the rehash was an unconditional write of the hash of the
password just verified, so a log-in with a stolen old password that raced the owner's
password change put the old password back (and the attacker kept a working password)."""

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from kumulus.backend import accounts
from kumulus.backend.models import Account
from kumulus.backend.security import hash_password, verify_password
from tests.backend.conftest import Actor


def test_a_password_changed_during_a_login_stays_changed(
    backend: TestClient, developer: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    db_ = backend.app.state.db  # type: ignore[attr-defined]
    old = PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=4).hash(developer.password)
    with db_.session() as db:
        db.execute(
            update(Account).where(Account.email == developer.email).values(password_hash=old)
        )
        db.commit()
    changed = hash_password("the owner's new password")

    def verify_while_the_owner_changes_it(stored: str | None, password: str) -> bool:
        ok = verify_password(stored, password)
        with db_.session() as db:  # the owner's change commits meanwhile
            db.execute(
                update(Account)
                .where(Account.email == developer.email)
                .values(password_hash=changed)
            )
            db.commit()
        return ok

    monkeypatch.setattr(accounts, "verify_password", verify_while_the_owner_changes_it)
    right = {"email": developer.email, "password": developer.password}
    # It verified against the hash it had read, which is no longer the password: no token.
    assert backend.post("/v1/auth/login", json=right).status_code == 401

    with db_.session() as db:
        stored = db.scalar(select(Account.password_hash).where(Account.email == developer.email))
    assert stored == changed
    monkeypatch.undo()
    assert backend.post("/v1/auth/login", json=right).status_code == 401
