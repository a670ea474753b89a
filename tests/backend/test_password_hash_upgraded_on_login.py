"""Hashes made with the old argon2 parameters (64 MiB, 3 passes, 4 lanes) keep working and
are made again with today's cheaper OWASP parameters at the next successful log-in; a
failed log-in changes nothing."""

from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from kumulus.backend.models import Account
from tests.backend.conftest import Actor


def _stored(backend: TestClient, email: str) -> str:
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        found = db.scalar(select(Account.password_hash).where(Account.email == email))
    assert found is not None
    return found


def test_an_old_hash_verifies_and_is_upgraded(backend: TestClient, developer: Actor) -> None:
    old = PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=4).hash(developer.password)
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        db.execute(
            update(Account).where(Account.email == developer.email).values(password_hash=old)
        )
        db.commit()

    wrong = {"email": developer.email, "password": "not the password at all"}
    assert backend.post("/v1/auth/login", json=wrong).status_code == 401
    assert _stored(backend, developer.email) == old

    right = {"email": developer.email, "password": developer.password}
    assert backend.post("/v1/auth/login", json=right).status_code == 200
    upgraded = _stored(backend, developer.email)
    assert upgraded.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert backend.post("/v1/auth/login", json=right).status_code == 200
    assert _stored(backend, developer.email) == upgraded  # made once, not at every log-in
