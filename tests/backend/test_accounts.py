from fastapi.testclient import TestClient

from tests.backend.conftest import Actor


def test_signup_login_tokens_and_revocation(backend: TestClient, developer: Actor) -> None:
    me = backend.get("/v1/me", headers=developer.headers).json()
    assert me["email"] == developer.email and me["role"] == "developer"

    created = backend.post("/v1/tokens", headers=developer.headers, json={"name": "ci"})
    assert created.status_code == 201
    token = created.json()["token"]
    assert token.startswith("kmt_") and created.json()["prefix"] == token[:10]
    listed = backend.get("/v1/tokens", headers=developer.headers).json()["items"]
    assert {t["name"] for t in listed} == {"login", "ci"}
    assert all("token" not in t for t in listed)  # never shown twice

    ci = {"Authorization": f"Bearer {token}"}
    assert backend.get("/v1/me", headers=ci).status_code == 200
    assert (
        backend.delete(f"/v1/tokens/{created.json()['id']}", headers=developer.headers).status_code
        == 204
    )
    assert backend.get("/v1/me", headers=ci).status_code == 401


def test_passwords_are_argon2_hashed(backend: TestClient, developer: Actor) -> None:
    from sqlalchemy import select

    from kumulus.backend.models import Account

    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        row = db.scalar(select(Account).where(Account.email == developer.email))
    assert row is not None
    assert row.password_hash.startswith("$argon2id$")
    assert developer.password not in row.password_hash


def test_bad_signups_and_logins(backend: TestClient, developer: Actor) -> None:
    dup = backend.post(
        "/v1/auth/signup",
        json={
            "email": developer.email.upper(),
            "password": "another long one",
            "role": "developer",
        },
    )
    assert dup.status_code == 409 and "exists" in dup.json()["detail"]
    for body, field in [
        ({"email": "nope", "password": "long enough pw", "role": "developer"}, "email"),
        ({"email": "a@b.co", "password": "short", "role": "developer"}, "password"),
        ({"email": "a@b.co", "password": "long enough pw", "role": "admin"}, "role"),
    ]:
        resp = backend.post("/v1/auth/signup", json=body)
        assert resp.status_code == 422 and field in resp.json()["detail"]
    wrong = backend.post("/v1/auth/login", json={"email": developer.email, "password": "wrong!!"})
    assert wrong.status_code == 401
    unknown = backend.post("/v1/auth/login", json={"email": "x@y.zz", "password": "whatever"})
    assert unknown.status_code == 401 and unknown.json() == wrong.json()


def test_other_users_token_cannot_be_revoked(
    backend: TestClient, developer: Actor, provider: Actor
) -> None:
    token_id = backend.get("/v1/tokens", headers=provider.headers).json()["items"][0]["id"]
    assert backend.delete(f"/v1/tokens/{token_id}", headers=developer.headers).status_code == 404
    assert backend.get("/v1/me", headers=provider.headers).status_code == 200
