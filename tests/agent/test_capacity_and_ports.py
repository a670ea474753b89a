"""No overcommit, no shared ports: also under concurrent creates."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fastapi.testclient import TestClient

from tests.fakes import FakeRuntime


def _req(key: str, cpu: float = 1, memory: str = "1g", disk: str = "10g") -> dict[str, object]:
    return {"username": "devtest", "sshKey": key, "cpu": cpu, "memory": memory, "disk": disk}


def test_beyond_free_capacity_is_409_naming_what_is_short(
    fake_agent: TestClient, fake_runtime: FakeRuntime, ssh_keypair: tuple[Path, str]
) -> None:
    # Host: 4 vCPU, 8g memory, 100g disk.
    assert (
        fake_agent.post("/v1/vms", json=_req(ssh_keypair[1], cpu=3, memory="6g")).status_code == 201
    )
    resp = fake_agent.post("/v1/vms", json=_req(ssh_keypair[1], cpu=2, memory="4g"))
    assert resp.status_code == 409
    detail = resp.json()["detail"]
    assert "2 vCPU asked, 1 free" in detail and "4g memory asked, 2g free" in detail
    resp = fake_agent.post("/v1/vms", json=_req(ssh_keypair[1], cpu=0.5, disk="95g"))
    assert resp.status_code == 409
    assert "disk" in resp.json()["detail"]
    assert len(fake_runtime.vms) == 1


def test_stopped_vms_keep_their_reservation(
    fake_agent: TestClient, ssh_keypair: tuple[Path, str]
) -> None:
    vm = fake_agent.post("/v1/vms", json=_req(ssh_keypair[1], cpu=4)).json()
    assert fake_agent.post(f"/v1/vms/{vm['vmId']}/stop").json()["status"] == "Stopped"
    assert fake_agent.post("/v1/vms", json=_req(ssh_keypair[1], cpu=1)).status_code == 409
    assert fake_agent.delete(f"/v1/vms/{vm['vmId']}").status_code == 200
    assert fake_agent.post("/v1/vms", json=_req(ssh_keypair[1], cpu=1)).status_code == 201


def test_concurrent_creates_get_distinct_ports_and_never_overcommit(
    fake_agent: TestClient, fake_runtime: FakeRuntime, ssh_keypair: tuple[Path, str]
) -> None:
    fake_runtime.create_delay = 0.01  # widen the race window
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(
            pool.map(
                lambda _: fake_agent.post(
                    "/v1/vms", json=_req(ssh_keypair[1], cpu=0.5, memory="512m", disk="1g")
                ),
                range(24),
            )
        )
    codes = sorted(r.status_code for r in results)
    assert codes.count(201) == 8  # 4 vCPU / 0.5
    assert codes.count(409) == 16
    ports = [vm.spec.ssh_port for vm in fake_runtime.vms.values()]
    assert len(ports) == len(set(ports)) == 8
    assert all(40100 <= p <= 40199 for p in ports)
    host = fake_agent.get("/v1/host").json()
    assert host["reserved"]["cpu"] == 4.0 and host["free"]["cpu"] == 0.0


def test_port_range_exhaustion_is_409(
    agent_settings,
    ssh_keypair: tuple[Path, str],  # type: ignore[no-untyped-def]
) -> None:
    from kumulus.agent.app import create_app

    settings = agent_settings.model_copy(update={"ssh_port_min": 40300, "ssh_port_max": 40301})
    runtime = FakeRuntime()
    with TestClient(create_app(settings, runtime, collect_stats=False)) as client:
        client.headers["Authorization"] = f"Bearer {settings.token_path.read_text().strip()}"
        for _ in range(2):
            assert (
                client.post("/v1/vms", json=_req(ssh_keypair[1], cpu=0.1, disk="1g")).status_code
                == 201
            )
        resp = client.post("/v1/vms", json=_req(ssh_keypair[1], cpu=0.1, disk="1g"))
        assert resp.status_code == 409
        assert "no free SSH port in 40300-40301" in resp.json()["detail"]
