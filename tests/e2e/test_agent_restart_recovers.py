"""The agent keeps no state of its own: after a crash and restart it finds its VMs again."""

import signal
from pathlib import Path

import pytest

from tests.e2e.agent_process import AgentProcess
from tests.e2e.conftest import ssh


@pytest.mark.slow
def test_vms_survive_an_agent_crash(
    docker_client,
    tmp_path: Path,
    ssh_keypair: tuple[Path, str],  # type: ignore[no-untyped-def]
) -> None:
    agent = AgentProcess(tmp_path / "agent", (23500, 23519)).start()
    vm_ids: list[str] = []
    try:
        with agent.client() as api:
            for _ in range(2):
                resp = api.post(
                    "/v1/vms",
                    json={
                        "username": "devtest",
                        "sshKey": ssh_keypair[1],
                        "cpu": 0.25,
                        "memory": "128m",
                        "disk": "1g",
                    },
                )
                assert resp.status_code == 201, resp.text
                vm_ids.append(resp.json()["vmId"])
            api.post(f"/v1/vms/{vm_ids[1]}/stop")
        agent.stop(signal.SIGKILL)

        agent = AgentProcess(tmp_path / "agent", (23500, 23519)).start()
        with agent.client() as api:
            listed = {v["vmId"]: v for v in api.get("/v1/vms").json()["items"]}
            assert set(listed) == set(vm_ids)
            assert listed[vm_ids[0]]["status"] == "Running"
            assert listed[vm_ids[1]]["status"] == "Stopped"
            assert ssh(ssh_keypair[0], listed[vm_ids[0]], "whoami").stdout.strip() == "devtest"
            # Ports and reservations are recovered too: a new VM gets a third port.
            resp = api.post(
                "/v1/vms",
                json={
                    "username": "devtest",
                    "sshKey": ssh_keypair[1],
                    "cpu": 0.25,
                    "memory": "128m",
                    "disk": "1g",
                },
            )
            vm_ids.append(resp.json()["vmId"])
            assert resp.json()["sshPort"] not in {v["sshPort"] for v in listed.values()}
            assert api.get("/v1/host").json()["reserved"]["cpu"] == 0.75
    finally:
        with agent.client() as api:
            for vm_id in vm_ids:
                api.delete(f"/v1/vms/{vm_id}")
        agent.stop()
