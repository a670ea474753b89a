"""/readyz answers 200 when its dependencies work and 503 `not_ready` naming the failed
check otherwise: the agent's engine, the backend's database and (settlement on) its chain,
which may be away when the backend starts; a probe that hangs fails after the deadline
instead of hanging the caller."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from kumulus.agent.app import create_app as create_agent
from kumulus.agent.runtime import EngineError
from kumulus.backend.app import create_app as create_backend
from kumulus.chain.client import ChainClient, ChainError
from kumulus.config import AgentSettings, BackendSettings
from kumulus.core.readiness import Check, run_checks
from tests.fakes import FakeRuntime


def test_agent_ready_until_the_engine_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = FakeRuntime()
    app = create_agent(
        AgentSettings(state_dir=tmp_path, lxcfs_dir=tmp_path / "lxcfs"), runtime, keypair=None
    )
    client = TestClient(app)
    ok = client.get("/readyz")
    assert ok.status_code == 200 and ok.json()["checks"] == {"engine": "ok"}

    def down() -> None:
        raise EngineError("Cannot connect to the Docker daemon at unix:///var/run/docker.sock")

    monkeypatch.setattr(runtime, "engine", down)
    resp = client.get("/readyz")
    assert resp.status_code == 503
    body = resp.json()
    assert body["code"] == "not_ready"
    assert body["fields"] == [{"loc": ["checks", "engine"], "msg": "EngineError"}]
    assert "docker.sock" not in resp.text  # the reason's text is for the log


def test_backend_ready_until_the_database_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_backend(BackendSettings(data_dir=tmp_path / "backend"))
    client = TestClient(app)
    assert client.get("/readyz").json() == {"ready": True, "checks": {"database": "ok"}}
    # The database's file becomes unreadable garbage: every statement fails.
    app.state.db.engine.dispose()
    (tmp_path / "backend" / "kumulus.db").write_bytes(b"not a database" * 100)
    resp = client.get("/readyz")
    app.state.db.engine.dispose()
    assert resp.status_code == 503, resp.text
    assert [f["loc"] for f in resp.json()["fields"]] == [["checks", "database"]]


def test_a_hanging_probe_fails_after_the_deadline() -> None:
    started = time.monotonic()
    results = run_checks([Check("chain", lambda: time.sleep(5)), Check("db", lambda: None)], 0.3)
    assert time.monotonic() - started < 2
    assert results == {"chain": "no answer within 0.3 s", "db": "ok"}


def test_backend_with_settlement_is_not_ready_while_the_chain_is_away(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    # Nothing listens there: the chain check fails (a client error, named, not a hang).
    settings = BackendSettings(data_dir=tmp_path / "backend", chain_url="ws://127.0.0.1:9")
    app = create_backend(settings)
    try:
        client = TestClient(app)
        resp = client.get("/readyz")
        assert resp.status_code == 503, resp.text
        assert [f["loc"] for f in resp.json()["fields"]] == [["checks", "chain"]]

        def finalized(self: ChainClient) -> int:
            return 7

        monkeypatch.setattr(ChainClient, "finalized_number", finalized)
        assert client.get("/readyz").json() == {
            "ready": True,
            "checks": {"database": "ok", "chain": "ok"},
        }

        def away(self: ChainClient) -> int:
            raise ChainError("connection refused")

        monkeypatch.setattr(ChainClient, "finalized_number", away)
        assert client.get("/readyz").status_code == 503
    finally:
        app.state.db.engine.dispose()
