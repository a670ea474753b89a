"""GET /metrics on the agent (and the backend, same route): loopback callers, and others
only with the token from `metrics_token_file`; the agent's own figures are there (VMs by
state, isolation, HTTP latency by route template, job metrics)."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from kumulus.agent.app import create_app
from kumulus.config import AgentSettings
from tests.fakes import FakeRuntime

REMOTE = ("203.0.113.7", 40000)


def test_remote_scrapes_need_the_token(tmp_path: Path) -> None:
    token_file = tmp_path / "metrics-token"
    token_file.write_text("s3cret-metrics-token\n")
    settings = AgentSettings(
        state_dir=tmp_path / "agent", lxcfs_dir=tmp_path / "lxcfs", metrics_token_file=token_file
    )
    app = create_app(settings, FakeRuntime(), keypair=None)
    remote = TestClient(app, client=REMOTE)
    assert remote.get("/metrics").status_code == 403
    wrong = {"Authorization": "Bearer s3cret-metrics-tokeN"}
    assert remote.get("/metrics", headers=wrong).status_code == 403
    good = remote.get("/metrics", headers={"Authorization": "Bearer s3cret-metrics-token"})
    assert good.status_code == 200
    assert "kumulus_agent_isolation_full 1.0" in good.text
    token_file.unlink()  # no file: loopback only, a token opens nothing
    assert remote.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 403


def test_agent_metrics_show_vms_routes_and_jobs(tmp_path: Path) -> None:
    runtime = FakeRuntime()
    settings = AgentSettings(state_dir=tmp_path / "agent", lxcfs_dir=tmp_path / "lxcfs")
    app = create_app(settings, runtime, keypair=None)
    admin = {"Authorization": f"Bearer {settings.token_path.read_text().strip()}"}
    with TestClient(app, client=("127.0.0.1", 40000)) as local:
        made = local.post(
            "/v1/vms",
            headers=admin,
            json={"username": "dev", "sshKey": SSH_KEY, "cpu": 1, "memory": "1g", "disk": "2g"},
        )
        assert made.status_code == 201, made.text
        local.get(f"/v1/vms/{made.json()['vmId']}", headers=admin)
        text = local.get("/metrics").text
    assert 'kumulus_agent_vms{state="running"} 1.0' in text
    assert (
        'kumulus_http_request_duration_seconds_count{method="GET",route="/v1/vms/{vm_id}",'
        'status="200"} 1.0'
    ) in text
    assert 'kumulus_job_runs_total{job="guard"}' in text


SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExoKzrGLzzNNO9d+FQVgBOqM2x6VJGMeYFHzkaLIm6b t"
