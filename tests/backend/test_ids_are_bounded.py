"""Path and query integers the database cannot hold are a 422, never a 500."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.backend.conftest import Actor

HUGE = "11083223521642980311040"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", f"/v1/ssh-keys/{HUGE}"),
        ("DELETE", f"/v1/tokens/{HUGE}"),
        ("GET", f"/v1/anchors/{HUGE}/proofs/0"),
        ("GET", f"/v1/anchors/1/proofs/{HUGE}"),
        ("DELETE", "/v1/ssh-keys/-1"),
        ("DELETE", "/v1/ssh-keys/0"),
        ("GET", f"/v1/vms/{'a' * 33}"),
        ("GET", f"/v1/vms?limit={HUGE}"),
        ("GET", "/v1/vms?limit=0"),
    ],
)
def test_out_of_range_is_422(backend: TestClient, developer: Actor, method: str, path: str) -> None:
    resp = backend.request(method, path, headers=developer.headers)
    assert resp.status_code == 422, resp.text
    assert resp.json()["code"] == "invalid"


def test_in_range_but_absent_is_404(backend: TestClient, developer: Actor) -> None:
    resp = backend.delete("/v1/ssh-keys/2147483647", headers=developer.headers)
    assert resp.status_code == 404 and resp.json()["code"] == "not_found"
