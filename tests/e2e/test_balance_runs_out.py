"""On a real agent: a developer whose balance runs out gets a warning, then their running
VM is stopped (insufficient_funds), its disk kept (the container is not deleted), and new
VMs are refused until they deposit."""

from __future__ import annotations

from pathlib import Path

import docker
import httpx
import pytest

from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic
from tests.e2e.agent_process import (
    AgentProcess,
    BackendProcess,
    link_wallet,
    make_host_key,
    register_agent,
    remove_agent_vms,
)
from tests.e2e.conftest import ssh
from tests.e2e.test_marketplace import _account, _wait

pytestmark = pytest.mark.slow


def test_running_out_of_balance_stops_the_vm_but_keeps_it(
    docker_client: docker.DockerClient, tmp_path: Path, ssh_keypair: tuple[Path, str]
) -> None:
    backend = BackendProcess(
        tmp_path / "backend",
        KUMULUS_BACKEND_MAINTENANCE_INTERVAL="1",
        # A one-minute hold (0.3 UNIT at the price below) and 0.1 UNIT more: the first
        # renewal, half a minute in, cannot be covered and the VM is stopped.
        KUMULUS_BACKEND_SIGNUP_CREDIT="0.4",
        KUMULUS_BACKEND_HOLD_WINDOW="60",
    ).start()
    mnemonic = new_mnemonic()
    make_host_key(tmp_path / "agent")
    agent = AgentProcess(
        tmp_path / "agent", (23640, 23649), KUMULUS_AGENT_STATS_INTERVAL="1"
    ).start()
    anon = httpx.Client(base_url=backend.url, timeout=60)
    try:
        prov = _account(anon, "dear@example.com", "provider")
        assert link_wallet(prov, keypair_from_mnemonic(mnemonic)).status_code == 200
        token = prov.post("/v1/provider/host-tokens").json()["token"]
        out = register_agent(agent, backend.url, token, mnemonic)
        assert out.returncode == 0, out.stderr
        host_id = out.stdout.split("registered as host ")[1].split(";")[0]
        # 36 UNIT per vCPU-hour: 0.5 vCPU spends 0.005 UNIT a second.
        patched = prov.patch(
            f"/v1/provider/hosts/{host_id}",
            json={"prices": {"cpu": "36", "memoryGib": "0", "diskGib": "0"}},
        )
        assert patched.status_code == 200, patched.text
        _wait(lambda: prov.get(f"/v1/provider/hosts/{host_id}").json()["status"] == "online")

        dev = _account(anon, "spender@example.com", "developer")
        vm = dev.post(
            "/v1/vms",
            json={"username": "frank", "sshKey": ssh_keypair[1], "cpu": 0.5, "memory": "256m",
                  "disk": "1g"},
        )  # fmt: skip
        assert vm.status_code == 201, vm.text
        vm_json = vm.json()
        assert ssh(ssh_keypair[0], vm_json, "true").returncode == 0
        assert dev.get("/v1/billing").json()["warning"]  # a few seconds left: warned

        stopped = _wait(
            lambda: (
                (v := dev.get(f"/v1/vms/{vm_json['id']}").json())["actualState"]
                == "insufficient_funds"
                and v
            ),
            timeout=120,
        )
        assert stopped["intendedState"] == "stopped" and "balance" in stopped["failureReason"]
        assert ssh(ssh_keypair[0], vm_json, "true").returncode != 0
        label = {"label": f"io.kumulus.vm.idempotency_key={vm_json['id']}"}
        kept = docker_client.containers.list(all=True, filters=label)
        assert len(kept) == 1 and kept[0].status == "exited"  # stopped, never deleted
        billing = dev.get("/v1/billing").json()
        # Never below zero. The VM stopped once a full hold could not be renewed, and the
        # stopped VM's unused hold came back: less than a new hold, so no create or start.
        assert 0 <= billing["balancePlanck"] < 300_000_000_000
        assert "could not renew their prepaid hold" in billing["warning"]
        again = dev.post(
            "/v1/vms",
            json={"username": "frank", "sshKey": ssh_keypair[1], "cpu": 0.5, "memory": "256m"},
        )
        assert again.status_code == 402
        assert dev.post(f"/v1/vms/{vm_json['id']}/start").status_code == 402
    finally:
        anon.close()
        agent.stop()
        remove_agent_vms(docker_client, tmp_path / "agent")
        backend.stop()
