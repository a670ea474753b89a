"""A `since` log marker that has the marker's shape but is no time (month 13, hour 99) or
is not after the Unix epoch is refused with a 422 by the agent and the backend alike. The
pattern alone let it through to the Docker driver, whose conversion raised ValueError (a
500 on the agent, a 502 on the backend), and docker-py refuses a `since` <= 0."""

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.fakes import FakeRuntime

BAD = ["2024-13-45T99:99:99Z", "0000-01-01T00:00:00Z", "1970-01-01T00:00:00Z"]


def _create(agent: TestClient, key: str) -> str:
    body = {"username": "devtest", "sshKey": key, "cpu": 0.5, "memory": "256m", "disk": "1g"}
    resp = agent.post("/v1/vms", json=body)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["vmId"])


@pytest.mark.parametrize("marker", BAD)
def test_agent_refuses_a_marker_that_is_no_time(
    fake_agent: TestClient, fake_runtime: FakeRuntime, ssh_keypair: tuple[Path, str], marker: str
) -> None:
    vm_id = _create(fake_agent, ssh_keypair[1])
    resp = fake_agent.get(f"/v1/vms/{vm_id}/logs", params={"since": marker})
    assert resp.status_code == 422, resp.text
    assert "since" in resp.text


def test_agent_takes_a_real_marker(
    fake_agent: TestClient, fake_runtime: FakeRuntime, ssh_keypair: tuple[Path, str]
) -> None:
    vm_id = _create(fake_agent, ssh_keypair[1])
    first = fake_agent.get(f"/v1/vms/{vm_id}/logs")
    assert first.status_code == 200 and first.json()["until"]
    fake_runtime.say(vm_id, "later")
    resp = fake_agent.get(f"/v1/vms/{vm_id}/logs", params={"since": first.json()["until"]})
    assert resp.status_code == 200 and resp.json()["logs"] == "later\n"
