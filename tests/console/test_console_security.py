"""Console security: CSRF on every form, cookie flags, login required, roles and owners,
a new API token shown once only."""

from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from kumulus.console import account_views, billing_views, developer_views, provider_views
from tests.console.conftest import csrf_of, signup


def _console_posts() -> list[str]:
    paths = []
    for router in (
        account_views.router,
        developer_views.router,
        provider_views.router,
        billing_views.router,
    ):
        for route in router.routes:
            if isinstance(route, APIRoute) and "POST" in route.methods:
                paths.append(
                    route.path.replace("{key_id}", "1")
                    .replace("{token_id}", "1")
                    .replace("{vm_id}", "x")
                    .replace("{action}", "stop")
                )
    return paths


def test_every_console_post_needs_the_csrf_token(server: TestClient) -> None:
    signup(server, "dev@example.com")
    posts = _console_posts()
    assert len(posts) >= 12
    for path in posts:
        missing = server.post(path, data={}, follow_redirects=False)
        assert missing.status_code == 403, (path, missing.status_code)
        forged = server.post(path, data={"csrf": "forged"}, follow_redirects=False)
        assert forged.status_code == 403, path
        assert "expired or came from another site" in forged.text
        assert "Traceback" not in forged.text


def test_cookie_flags(tmp_path: object, server: TestClient) -> None:
    page = server.get("/console/signup")
    csrf_cookie = page.headers["set-cookie"]
    assert "HttpOnly" in csrf_cookie and "SameSite=strict" in csrf_cookie
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    resp = server.post(
        "/console/signup",
        data={
            "csrf": csrf,
            "role": "developer",
            "email": "c@example.com",
            "password": "correct horse battery",
        },
        follow_redirects=False,
    )
    session = resp.headers["set-cookie"]
    assert "kumulus_session=kmt_" in session
    assert "HttpOnly" in session and "SameSite=lax" in session and "Max-Age=604800" in session
    assert "Secure" not in session  # plain http on loopback


def test_cookies_are_secure_over_https(server: TestClient) -> None:
    server.base_url = "https://127.0.0.1"  # type: ignore[assignment]
    page = server.get("/console/signup")
    assert "Secure" in page.headers["set-cookie"]


def test_login_required_and_roles(server: TestClient) -> None:
    for path in ["/console/vms", "/console/keys", "/console/account", "/console/provider/hosts"]:
        resp = server.get(path, follow_redirects=False)
        assert resp.status_code == 303 and resp.headers["location"] == "/console/login"
    signup(server, "dev2@example.com")
    resp = server.get("/console/provider/hosts")
    assert resp.status_code == 403 and "for provider accounts" in resp.text
    assert server.get("/console/vms/doesnotexist").status_code == 404


def test_new_api_token_is_shown_once_and_works(server: TestClient) -> None:
    csrf = signup(server, "dev3@example.com")
    created = server.post("/console/account/tokens", data={"csrf": csrf, "name": "laptop"})
    token = re.search(r'id="new-token">([^<]+)<', created.text).group(1)  # type: ignore[union-attr]
    assert server.get("/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    again = server.get("/console/account")
    assert token not in again.text and "laptop" in again.text
    assert again.headers["cache-control"] == "no-store"
    token_id = re.findall(r"/console/account/tokens/(\d+)/revoke", again.text)[-1]
    server.post(f"/console/account/tokens/{token_id}/revoke", data={"csrf": csrf})
    assert server.get("/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_logout_revokes_the_session(server: TestClient) -> None:
    csrf = signup(server, "dev4@example.com")
    cookie = server.cookies.get("kumulus_session")
    assert server.get("/v1/me", headers={"Authorization": f"Bearer {cookie}"}).status_code == 200
    server.post("/console/logout", data={"csrf": csrf}, follow_redirects=False)
    assert server.get("/v1/me", headers={"Authorization": f"Bearer {cookie}"}).status_code == 401
    assert server.get("/console/vms", follow_redirects=False).status_code == 303


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({"email": "not-an-email", "password": "correct horse battery"}, "email", "not a valid"),
        ({"email": "a@example.com", "password": "short"}, "password", "at least 10"),
        ({"email": "", "password": ""}, "email", ""),
    ],
)
def test_signup_errors_are_next_to_their_field(
    server: TestClient, form: dict[str, str], field: str, message: str
) -> None:
    csrf = csrf_of(server, "/console/signup")
    resp = server.post("/console/signup", data={"csrf": csrf, "role": "developer", **form})
    assert resp.status_code == 422
    found = re.search(rf'id="e-{field}">([^<]+)<', resp.text)
    assert found and message in found.group(1), resp.text[-1500:]
    assert f'id="f-{field}"' in resp.text and 'aria-invalid="true"' in resp.text
