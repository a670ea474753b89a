"""A create the engine failed after making the container (dockerd killed mid-call: the
chaos test's seed 33) answers 502, and the backend gives that VM up on this host: nothing
will ever name the container again. The agent removes it once the engine answers, across
an agent restart too, unless a retried create (same idempotency key) took it over."""

import time
from pathlib import Path

from fastapi.testclient import TestClient

from kumulus.agent.app import create_app
from kumulus.agent.runtime import EngineError, VMInfo, VMSpec
from kumulus.config import AgentSettings
from tests.fakes import FakeRuntime


class DyingEngine(FakeRuntime):
    """Makes the container, then dies before answering; answers nothing while down."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.die_in_create = False
        self.die_in_start = False
        self.die_after_start = False

    def _check(self) -> None:
        if self.down:
            raise EngineError("Docker engine error: Connection refused")

    def create(self, spec: VMSpec, image: str, pids_limit: int) -> VMInfo:
        self._check()
        info = super().create(spec, image, pids_limit)
        if self.die_in_create:
            self.down = True
            raise EngineError("Docker engine error: Remote end closed connection")
        return info

    def start(self, vm_id: str) -> VMInfo:
        self._check()
        if self.die_in_start:
            self.down = True
            raise EngineError("Docker engine error: Remote end closed connection")
        info = super().start(vm_id)
        self.down = self.die_after_start  # while sshd comes up
        return info

    def inspect(self, vm_id: str) -> VMInfo:
        self._check()
        return super().inspect(vm_id)

    def destroy(self, vm_id: str) -> None:
        self._check()
        super().destroy(vm_id)


def _req(key: str) -> dict[str, object]:
    return {"username": "devtest", "sshKey": key, "cpu": 0.5, "memory": "256m", "disk": "1g"}


def _agent(settings: AgentSettings, engine: DyingEngine) -> TestClient:
    client = TestClient(create_app(settings, engine, keypair=None, collect_stats=False))
    client.__enter__()
    client.headers["Authorization"] = f"Bearer {settings.token_path.read_text().strip()}"
    return client


def test_a_container_made_by_a_dying_create_is_removed_when_the_engine_is_back(
    agent_settings: AgentSettings, ssh_keypair: tuple[Path, str]
) -> None:
    engine = DyingEngine()
    agent = _agent(agent_settings, engine)
    try:
        engine.die_in_create = True
        resp = agent.post("/v1/vms", json=_req(ssh_keypair[1]), headers={"Idempotency-Key": "a"})
        assert resp.status_code == 502
        assert len(engine.vms) == 1  # the engine made it; removing it failed
        service = agent.app.state.service  # type: ignore[attr-defined]
        assert service.remove_leftovers() == []  # still down: kept for later
        assert len(engine.vms) == 1
        engine.down = engine.die_in_create = False
        removed = service.remove_leftovers()
        assert len(removed) == 1 and engine.vms == {}
    finally:
        agent.__exit__(None, None, None)


def test_a_failed_start_is_removed_after_an_agent_restart(
    agent_settings: AgentSettings, ssh_keypair: tuple[Path, str]
) -> None:
    engine = DyingEngine()
    agent = _agent(agent_settings, engine)
    engine.die_in_start = True
    resp = agent.post("/v1/vms", json=_req(ssh_keypair[1]))
    assert resp.status_code == 502
    agent.__exit__(None, None, None)
    assert len(engine.vms) == 1
    assert (agent_settings.state_dir / "failed-creates.json").exists()
    # The agent restarts once the engine is back: what the last run could not remove goes.
    engine.down = engine.die_in_start = False
    (vm_id,) = engine.vms
    engine._set(vm_id, "exited")  # not "created": the start-up recovery alone keeps it
    restarted = _agent(agent_settings, engine)
    try:
        assert engine.vms == {}
    finally:
        restarted.__exit__(None, None, None)


def test_a_create_whose_engine_dies_while_sshd_comes_up_leaves_nothing(
    agent_settings: AgentSettings, ssh_keypair: tuple[Path, str]
) -> None:
    engine = DyingEngine()
    agent = _agent(agent_settings, engine)
    try:
        engine.die_after_start = True
        resp = agent.post("/v1/vms", json=_req(ssh_keypair[1]))
        assert resp.status_code in (502, 503), resp.text
        assert len(engine.vms) == 1
        engine.down = engine.die_after_start = False
        assert len(agent.app.state.service.remove_leftovers()) == 1  # type: ignore[attr-defined]
        assert engine.vms == {}
    finally:
        agent.__exit__(None, None, None)


def test_a_retry_of_the_failed_create_gets_one_fresh_vm(
    agent_settings: AgentSettings, ssh_keypair: tuple[Path, str]
) -> None:
    engine = DyingEngine()
    agent = _agent(agent_settings, engine)
    try:
        engine.die_in_create = True
        headers = {"Idempotency-Key": "same"}
        assert agent.post("/v1/vms", json=_req(ssh_keypair[1]), headers=headers).status_code == 502
        engine.down = engine.die_in_create = False
        # The retry (same key) comes before the leftovers job: the unstarted VM, whose host
        # key never went in, is replaced by one whose sshd can start.
        retried = agent.post("/v1/vms", json=_req(ssh_keypair[1]), headers=headers)
        assert retried.status_code == 201, retried.text
        service = agent.app.state.service  # type: ignore[attr-defined]
        assert service.remove_leftovers() == []
        assert list(engine.vms) == [retried.json()["vmId"]]
        assert engine.vms[retried.json()["vmId"]].state == "running"
    finally:
        agent.__exit__(None, None, None)


def test_the_leftovers_job_removes_it_without_being_asked(
    agent_settings: AgentSettings, ssh_keypair: tuple[Path, str]
) -> None:
    engine = DyingEngine()
    agent = _agent(agent_settings.model_copy(update={"leftovers_interval": 0.1}), engine)
    try:
        engine.die_in_create = True
        assert agent.post("/v1/vms", json=_req(ssh_keypair[1])).status_code == 502
        time.sleep(0.3)
        assert len(engine.vms) == 1  # the engine is still down
        engine.down = engine.die_in_create = False
        deadline = time.monotonic() + 5
        while engine.vms and time.monotonic() < deadline:
            time.sleep(0.05)
        assert engine.vms == {}
        assert "leftovers" in agent.app.state.jobs.names  # type: ignore[attr-defined]
    finally:
        agent.__exit__(None, None, None)
