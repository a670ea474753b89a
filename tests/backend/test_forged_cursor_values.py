"""A forged cursor whose values are of the right type but out of the columns' range is a
422 like any other forged cursor, never a 500 from the database driver."""

from __future__ import annotations

import base64
import json

from fastapi.testclient import TestClient

from tests.backend.conftest import Actor


def _cursor(values: list[object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode()


def test_an_integer_beyond_64_bits_is_422(backend: TestClient, developer: Actor) -> None:
    for path in ("/v1/ssh-keys", "/v1/tokens", "/v1/billing/entries"):
        for value in (2**63, -(2**63) - 1, 10**30):
            resp = backend.get(path, headers=developer.headers, params={"after": _cursor([value])})
            assert resp.status_code == 422, (path, value, resp.text)
            assert resp.json()["code"] == "invalid"


def test_an_integer_beyond_64_bits_is_422_for_providers(
    backend: TestClient, provider: Actor
) -> None:
    after = _cursor([2**63])
    resp = backend.get("/v1/provider/payouts", headers=provider.headers, params={"after": after})
    assert resp.status_code == 422, resp.text
