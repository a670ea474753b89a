"""Bodies parsed before any check can refuse their sender are bounded small: the API's
routes that take a body without a gate (sign-up, log-in, token info, delegation) at
16 KiB, the consoles' forms (parsed before the CSRF and login checks) at 64 KiB,
answered 413 before a byte of them is parsed. Under the limit they work as before;
signed-in API routes keep the 1 MiB default. (A 1 MiB body held the event loop 96 ms
as JSON, 216 ms as a form.)"""

from __future__ import annotations

import json
import secrets

from fastapi.testclient import TestClient

from kumulus.backend.app import API_ROUTERS
from kumulus.core.auth_first import ungated_body_paths
from tests.console.conftest import csrf_of, signup

PARSED_UNCHECKED = {
    "/v1/auth/signup", "/v1/auth/login", "/v1/hosts/token-info", "/v1/hosts/delegation",
}  # fmt: skip


def _json_of_size(size: int) -> bytes:
    body = {"email": "someone@example.com", "password": "x" * 12, "pad": ""}
    body["pad"] = "a" * (size - len(json.dumps(body)))
    return json.dumps(body).encode()


def test_public_api_bodies_over_16_kib_are_413_and_smaller_ones_are_served(
    server: TestClient,
) -> None:
    routes = [route for router in API_ROUTERS for route in router.routes]
    assert set(ungated_body_paths(routes)) == PARSED_UNCHECKED
    headers = {"content-type": "application/json"}
    for path in PARSED_UNCHECKED:
        over = server.post(path, content=_json_of_size((16 << 10) + 1), headers=headers)
        assert over.status_code == 413, (path, over.text)
        assert over.json()["code"] == "too_large"
    # Just under the limit: parsed and judged by the route's model (no such field).
    under = server.post("/v1/auth/login", content=_json_of_size(16 << 10), headers=headers)
    assert under.status_code == 422, under.text
    assert under.json()["fields"][0]["loc"] == ["body", "pad"]
    # Chunked, without a Content-Length: refused as soon as it passes the limit.
    chunks = (b" " * 4096 for _ in range(5))
    chunked = server.post("/v1/auth/login", content=chunks, headers=headers)
    assert chunked.status_code == 413


def test_signed_in_api_bodies_keep_the_default_limit(server: TestClient) -> None:
    email = f"dev-{secrets.token_hex(4)}@example.com"
    assert (
        server.post(
            "/v1/auth/signup",
            json={"email": email, "password": "correct horse battery", "role": "developer"},
        ).status_code
        == 201
    )
    token = server.post(
        "/v1/auth/login", json={"email": email, "password": "correct horse battery"}
    ).json()["token"]
    # 100 KiB to a signed-in route: past the anonymous limit, under the default; the
    # route answers it (a key that is no SSH key: 422), not the body limit.
    resp = server.post(
        "/v1/ssh-keys",
        json={"name": "big", "publicKey": "ssh-ed25519 " + "A" * (100 << 10)},
        headers={"authorization": f"Bearer {token}"},
    )
    assert resp.status_code == 422, resp.text


def test_console_forms_over_64_kib_are_413_and_a_largest_key_form_is_served(
    server: TestClient,
) -> None:
    csrf = csrf_of(server)
    big = {"csrf": csrf, "email": "a@example.com", "password": "%" * (64 << 10)}
    for path in ("/console/login", "/console/signup", "/console/provider/hosts/new"):
        resp = server.post(path, data=big, follow_redirects=False)
        assert resp.status_code == 413, (path, resp.status_code)
    # The largest form a console takes: an SSH key of 16,384 characters, each of them
    # percent-encoded ("+" and "/" of base64 take three bytes).
    csrf = signup(server, f"dev-{secrets.token_hex(4)}@example.com")
    resp = server.post(
        "/console/keys",
        data={"csrf": csrf, "name": "big", "public_key": "ssh-rsa " + "+/" * 8188},
        follow_redirects=False,
    )
    assert len(resp.request.content) > 48 << 10
    assert resp.status_code == 422, resp.status_code  # judged by the page: no SSH key
