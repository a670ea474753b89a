"""The whole marketplace on one machine: a backend (SQLite, then PostgreSQL), two agents of
one provider, a developer whose VMs land on the host that fits; SSH logins work; stop,
start, delete; one agent dies, its host goes offline, its VM shows unreachable and new VMs
go to the other host."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

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

pytestmark = pytest.mark.slow
PASSWORD = "a long password"


def _account(api: httpx.Client, email: str, role: str) -> httpx.Client:
    assert (
        api.post(
            "/v1/auth/signup", json={"email": email, "password": PASSWORD, "role": role}
        ).status_code
        == 201
    )
    token = api.post("/v1/auth/login", json={"email": email, "password": PASSWORD}).json()["token"]
    # VM changes answer once recorded; these flows look at what the host did, so they wait
    # for it (RFC 7240 `Prefer: wait`), as a script would.
    headers = {"Authorization": f"Bearer {token}", "Prefer": "wait=110"}
    return httpx.Client(base_url=str(api.base_url), timeout=120, headers=headers)


def _wait(predicate, timeout: float = 30) -> Any:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out; last value {value!r}")


def test_developer_gets_vms_placed_on_fitting_hosts(
    docker_client: docker.DockerClient,
    tmp_path: Path,
    database_url: str,
    ssh_keypair: tuple[Path, str],
) -> None:
    backend = BackendProcess(
        tmp_path / "backend",
        database_url,
        KUMULUS_BACKEND_HEARTBEAT_TTL="4",
        KUMULUS_BACKEND_MAINTENANCE_INTERVAL="1",
    ).start()
    mnemonic = new_mnemonic()
    wallet = keypair_from_mnemonic(mnemonic)
    agents: dict[str, AgentProcess] = {}
    for name, ports, cpu, memory in [
        ("small", (23550, 23559), "1", "1g"),
        ("big", (23560, 23569), "4", "8g"),
    ]:
        make_host_key(tmp_path / name)
        agents[name] = AgentProcess(
            tmp_path / name,
            ports,
            KUMULUS_AGENT_STATS_INTERVAL="1",
            KUMULUS_AGENT_CPU_CAPACITY=cpu,
            KUMULUS_AGENT_MEMORY_CAPACITY=memory,
            KUMULUS_AGENT_DISK_CAPACITY="20g",
        ).start()
    anon = httpx.Client(base_url=backend.url, timeout=60)
    prov = dev = None
    try:
        prov = _account(anon, "prov@example.com", "provider")
        prov.put("/v1/provider/profile", json={"name": "Acme", "country": "FR", "region": "eu"})
        assert link_wallet(prov, wallet, wrap=True).status_code == 200
        host_ids: dict[str, str] = {}
        for name, agent in agents.items():
            token = prov.post("/v1/provider/host-tokens").json()["token"]
            out = register_agent(agent, backend.url, token, mnemonic)
            assert out.returncode == 0, out.stderr
            host_ids[name] = out.stdout.split("registered as host ")[1].split(";")[0]
        _wait(
            lambda: (
                [
                    h
                    for h in prov.get("/v1/provider/hosts").json()["items"]
                    if h["status"] == "online"
                ].__len__()
                == 2
            )
        )

        dev = _account(anon, "dev@example.com", "developer")
        key_id = dev.post(
            "/v1/ssh-keys", json={"name": "laptop", "publicKey": ssh_keypair[1]}
        ).json()["id"]

        # 2 vCPU only fits the big host.
        big_vm = dev.post(
            "/v1/vms",
            json={
                "name": "build",
                "username": "alice",
                "sshKeyId": key_id,
                "cpu": 2,
                "memory": "1g",
                "disk": "2g",
                "region": "eu",
            },
        )
        assert big_vm.status_code == 201, big_vm.text
        big_vm_json = big_vm.json()
        assert big_vm_json["hostId"] == host_ids["big"]
        assert big_vm_json["actualState"] == "running"
        assert big_vm_json["sshCommand"].startswith(f"ssh -p {big_vm_json['sshPort']} alice@")
        # A small one goes to the emptier host: the small one.
        small_vm = dev.post(
            "/v1/vms",
            json={
                "username": "bob",
                "sshKey": ssh_keypair[1],
                "cpu": 0.5,
                "memory": "256m",
                "disk": "1g",
            },
        ).json()
        assert small_vm["hostId"] == host_ids["small"], small_vm
        # Nothing fits: a reason, not a 500.
        too_big = dev.post(
            "/v1/vms",
            json={"username": "carol", "sshKeyId": key_id, "cpu": 3, "memory": "1g", "disk": "1g"},
        )
        assert too_big.status_code == 409
        assert "largest free is 2" in too_big.json()["detail"]

        for vm, user in [(big_vm_json, "alice"), (small_vm, "bob")]:
            out = ssh(ssh_keypair[0], {**vm, "sshHost": vm["sshHost"], "username": user}, "whoami")
            assert out.stdout.strip() == user, out.stderr

        vm_id = big_vm_json["id"]
        assert dev.post(f"/v1/vms/{vm_id}/stop").json()["actualState"] == "stopped"
        assert ssh(ssh_keypair[0], {**big_vm_json, "username": "alice"}, "true").returncode != 0
        started = dev.post(f"/v1/vms/{vm_id}/start").json()
        assert started["actualState"] == "running" and started["intendedState"] == "running"
        assert ssh(ssh_keypair[0], {**big_vm_json, "username": "alice"}, "true").returncode == 0
        assert "Server listening" in dev.get(f"/v1/vms/{vm_id}/logs").json()["logs"]

        # Another developer sees none of it.
        other = _account(anon, "eve@example.com", "developer")
        assert other.get("/v1/vms").json()["items"] == []
        assert other.get(f"/v1/vms/{vm_id}").status_code == 404
        assert other.delete(f"/v1/vms/{vm_id}").status_code == 404

        assert dev.delete(f"/v1/vms/{vm_id}").status_code == 204
        assert dev.get(f"/v1/vms/{vm_id}").status_code == 404
        assert (
            docker_client.containers.list(
                all=True, filters={"label": f"io.kumulus.vm.idempotency_key={vm_id}"}
            )
            == []
        )

        # The small host's agent dies: host offline, its VM unreachable, new VMs elsewhere.
        agents["small"].stop(signal.SIGKILL)
        _wait(
            lambda: dev.get(f"/v1/vms/{small_vm['id']}").json()["actualState"] == "unreachable",
            timeout=20,
        )
        hosts = {h["id"]: h["status"] for h in prov.get("/v1/provider/hosts").json()["items"]}
        assert hosts == {host_ids["small"]: "offline", host_ids["big"]: "online"}
        third = dev.post(
            "/v1/vms",
            json={
                "username": "dave",
                "sshKeyId": key_id,
                "cpu": 0.5,
                "memory": "256m",
                "disk": "1g",
            },
        ).json()
        assert third["hostId"] == host_ids["big"]
        assert dev.delete(f"/v1/vms/{third['id']}").status_code == 204
        hosts = {h["id"]: h for h in prov.get("/v1/provider/hosts").json()["items"]}
        assert hosts[host_ids["big"]]["leasesCompleted"] == 2
        assert hosts[host_ids["big"]]["reservedCpu"] == 0

        # Deleting a VM whose host is away: accepted, shown as deleting, finished by the
        # backend once the host is back (its capacity stays held until then).
        stuck = dev.delete(f"/v1/vms/{small_vm['id']}")
        assert stuck.status_code == 202, stuck.text
        assert stuck.json()["actualState"] == "deleting"
        assert [v["actualState"] for v in dev.get("/v1/vms").json()["items"]] == ["deleting"]
        assert dev.post(f"/v1/vms/{small_vm['id']}/start").status_code == 409
        small_label = {"label": f"io.kumulus.vm.idempotency_key={small_vm['id']}"}
        assert docker_client.containers.list(all=True, filters=small_label) != []
        agents["small"].start()
        _wait(lambda: dev.get(f"/v1/vms/{small_vm['id']}").status_code == 404, timeout=30)
        assert docker_client.containers.list(all=True, filters=small_label) == []
        assert dev.get("/v1/vms").json()["items"] == []
        small_host = prov.get(f"/v1/provider/hosts/{host_ids['small']}").json()
        assert small_host["status"] == "online" and small_host["reservedCpu"] == 0
    finally:
        for client in (prov, dev, anon):
            if client is not None:
                client.close()
        for agent in agents.values():
            agent.stop()
            remove_agent_vms(docker_client, agent.state_dir)
        backend.stop()
