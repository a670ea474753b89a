"""Log out everywhere: `POST /v1/tokens/revoke-all` revokes every token and console session
of the account except the caller's, and no other account's."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.backend.conftest import Actor


def _login(client: TestClient, actor: Actor) -> dict[str, str]:
    resp = client.post("/v1/auth/login", json={"email": actor.email, "password": actor.password})
    return {"Authorization": f"Bearer {resp.json()['token']}"}


def test_revoke_all_keeps_only_the_callers_token(backend: TestClient) -> None:
    actor, other = Actor(backend, "developer"), Actor(backend, "developer")
    stolen, laptop = _login(backend, actor), _login(backend, actor)
    made = backend.post("/v1/tokens", json={"name": "ci"}, headers=actor.headers).json()
    script = {"Authorization": f"Bearer {made['token']}"}

    resp = backend.post("/v1/tokens/revoke-all", headers=laptop)
    assert resp.status_code == 200 and resp.json() == {"revoked": 3}
    for headers in (stolen, actor.headers, script):
        assert backend.get("/v1/me", headers=headers).status_code == 401
    assert backend.get("/v1/me", headers=laptop).status_code == 200
    assert backend.get("/v1/me", headers=other.headers).status_code == 200
    states = {
        t["name"]: t["revokedAt"] for t in backend.get("/v1/tokens", headers=laptop).json()["items"]
    }
    assert states["ci"] is not None
    assert backend.post("/v1/tokens/revoke-all", headers=laptop).json() == {"revoked": 0}
    assert backend.post("/v1/tokens/revoke-all", headers=stolen).status_code == 401
