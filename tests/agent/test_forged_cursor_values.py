"""The agent's VM list answers a cursor with values of the wrong types with a 422, not a
500 (its keys are compared in Python, where str and int do not compare)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from fastapi.testclient import TestClient


def _cursor(values: list[object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode()


def test_a_cursor_of_the_wrong_types_is_422(
    fake_agent: TestClient, ssh_keypair: tuple[Path, str]
) -> None:
    body = {"username": "devtest", "sshKey": ssh_keypair[1], "cpu": 0.5, "memory": "256m",
            "disk": "1g"}  # fmt: skip
    assert fake_agent.post("/v1/vms", json=body).status_code == 201
    for values in ([1, 2], [{"t": "2020-01-01T00:00:00"}, "x"], ["x", 1]):
        resp = fake_agent.get("/v1/vms", params={"after": _cursor(values)})
        assert resp.status_code == 422, (values, resp.text)
        assert resp.json()["code"] == "invalid"
