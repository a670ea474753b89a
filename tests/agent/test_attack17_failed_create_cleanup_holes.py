"""Holes in the failed-create cleanup that the attacker review (attack17) found, each
failing on d7ecced: a failed retry left its VM for good, one hung removal stalled every
create, an unwritable state disk stopped the agent, a container the engine made after the
call timed out leaked, and the request kept the VM's private host key."""

import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from kumulus.agent.app import create_app
from kumulus.agent.leftovers import Leftovers
from kumulus.agent.runtime import EngineError, VMInfo
from kumulus.config import AgentSettings
from tests.agent.test_a_failed_create_leaves_no_container_once_the_engine_is_back import (
    DyingEngine,
    _agent,
    _req,
)
from tests.fakes import FakeRuntime


def test_a_retry_that_fails_does_not_leave_its_vm_behind_untracked(
    agent_settings: AgentSettings, ssh_keypair: tuple[Path, str]
) -> None:
    """The first create's VM started and then died while the engine was down (abandoned,
    listed as a leftover). The backend retries with the same key before the leftovers job
    ran; the retry takes the VM over (discards it from the leftovers) and its start fails:
    the retry answers 502, so the backend gives the VM up on this host, but the container
    is now neither removed nor listed: it stays for ever (port, reservation, developer key,
    restart policy unless-stopped)."""
    engine = DyingEngine()
    agent = _agent(agent_settings, engine)
    service = agent.app.state.service  # type: ignore[attr-defined]
    try:
        headers = {"Idempotency-Key": "k"}
        engine.die_after_start = True
        resp = agent.post("/v1/vms", json=_req(ssh_keypair[1]), headers=headers)
        assert resp.status_code in (502, 503), resp.text
        (vm_id,) = engine.vms
        assert vm_id in service._leftovers  # abandoned, kept for the job
        engine.down = engine.die_after_start = False
        engine._set(vm_id, "exited")  # it ran, then died
        engine.die_in_start = True  # the retry's start fails again
        retry = agent.post("/v1/vms", json=_req(ssh_keypair[1]), headers=headers)
        assert retry.status_code >= 500, retry.text  # the backend gives it up here
        engine.down = engine.die_in_start = False
        service.remove_leftovers()  # the leftovers job's next run
        # Expected: a create that answered an error leaves no VM (the commit's own rule).
        assert vm_id not in engine.vms, "the retried VM leaked: no longer a leftover"
    finally:
        agent.__exit__(None, None, None)


def test_an_unwritable_state_dir_does_not_stop_the_agent_from_starting(
    agent_settings: AgentSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full (or read-only) state disk: removing a leftover at start-up cannot rewrite
    failed-creates.json; the agent should still start (its VMs, heartbeats), not crash."""
    agent_settings.state_dir.mkdir(parents=True, exist_ok=True)
    (agent_settings.state_dir / "failed-creates.json").write_text('["0123456789abcdef"]')

    def full(self: Leftovers) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Leftovers, "_save", full)
    engine = DyingEngine()
    app = create_app(agent_settings, engine, keypair=None, collect_stats=False)
    with TestClient(app) as client:  # raises on HEAD: the lifespan's remove_leftovers
        client.headers["Authorization"] = f"Bearer {agent_settings.token_path.read_text().strip()}"
        assert client.get("/v1/vms").status_code == 200


class SlowRemoval(DyingEngine):
    """One container whose removal hangs until the client's timeout (a process stuck in
    uninterruptible IO: docker rm -f waits)."""

    def __init__(self) -> None:
        super().__init__()
        self.stuck: set[str] = set()

    def destroy(self, vm_id: str) -> None:
        if vm_id in self.stuck:
            time.sleep(1.5)  # stands for the Docker client's 60 s timeout
            raise EngineError("Docker engine error: Read timed out")
        super().destroy(vm_id)


def test_one_unremovable_leftover_does_not_stall_every_create(
    agent_settings: AgentSettings, ssh_keypair: tuple[Path, str]
) -> None:
    """remove_leftovers makes its engine calls holding the create lock, every 5 s: one
    leftover whose removal hangs holds every create on the host (and every retry's
    _wait_created poll) for the whole engine timeout, again and again."""
    engine = SlowRemoval()
    agent = _agent(agent_settings, engine)
    service = agent.app.state.service  # type: ignore[attr-defined]
    try:
        engine.stuck.add("feedfacefeedface")
        with service._create_lock:
            service._leftovers.add("feedfacefeedface")
        job = threading.Thread(target=service.remove_leftovers)
        job.start()
        time.sleep(0.1)
        t0 = time.monotonic()
        resp = agent.post("/v1/vms", json=_req(ssh_keypair[1]))
        took = time.monotonic() - t0
        job.join()
        assert resp.status_code in (200, 201), resp.text
        assert took < 0.5, f"an unrelated create waited {took:.2f} s behind a leftover removal"
    finally:
        agent.__exit__(None, None, None)


class LateCreate(DyingEngine):
    """The Docker client times out on create (60 s read timeout) while dockerd goes on
    and makes the container a moment later: the agent's immediate removal finds nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.late: list[tuple[object, str, int]] = []

    def create(self, spec, image, pids_limit):  # type: ignore[no-untyped-def]
        self.late.append((spec, image, pids_limit))
        raise EngineError("Docker engine error: Read timed out. (read timeout=60)")

    def land(self) -> None:
        for spec, image, pids in self.late:
            DyingEngine.create(self, spec, image, pids)  # type: ignore[arg-type]


def test_a_container_the_engine_makes_after_the_timeout_is_removed_too(
    agent_settings: AgentSettings, ssh_keypair: tuple[Path, str]
) -> None:
    engine = LateCreate()
    agent = _agent(agent_settings, engine)
    service = agent.app.state.service  # type: ignore[attr-defined]
    try:
        resp = agent.post("/v1/vms", json=_req(ssh_keypair[1]), headers={"Idempotency-Key": "x"})
        assert resp.status_code >= 500  # the backend gives this VM up on this host
        assert not service._leftovers  # "found gone" at once: forgotten
        engine.land()  # dockerd finishes the create it was asked for
        assert len(engine.vms) == 1
        assert service.sweep_unstarted() == list(engine.vms)  # the guard job finds it
        service.remove_leftovers()  # and the leftovers job removes it
        assert engine.vms == {}, "leaked until the next agent restart (port + reservation)"
    finally:
        agent.__exit__(None, None, None)


class PeekingEngine(FakeRuntime):
    """Looks, while sshd comes up, for the VM's private host key in the agent's frames."""

    def __init__(self) -> None:
        super().__init__()
        self.lingering: list[str] = []

    def start(self, vm_id: str) -> VMInfo:
        import sys

        frame = sys._getframe(1)
        while frame is not None:
            for name, value in frame.f_locals.items():
                if getattr(value, "private_openssh", None):
                    self.lingering.append(f"{frame.f_code.co_name}:{name}")
            frame = frame.f_back  # type: ignore[assignment]
        return super().start(vm_id)


def test_the_private_host_key_is_not_kept_by_the_request_after_it_went_in(
    agent_settings: AgentSettings, ssh_keypair: tuple[Path, str]
) -> None:
    """service.py: "From now on the private key lives in the VM's files only" (del
    host_key in _finish_create). create() still holds it in its own frame (and in any
    traceback of a failed create) for the whole wait for sshd."""
    engine = PeekingEngine()
    agent = _agent(agent_settings, engine)  # type: ignore[arg-type]
    try:
        assert agent.post("/v1/vms", json=_req(ssh_keypair[1])).status_code in (200, 201)
        assert engine.lingering == []
    finally:
        agent.__exit__(None, None, None)


class FlappingEngine(DyingEngine):
    """Dies again right after the retry listed the VMs (dockerd killed twice: chaos)."""

    def __init__(self) -> None:
        super().__init__()
        self.die_after_list = False

    def list(self):  # type: ignore[no-untyped-def]
        vms = super().list()
        if self.die_after_list:
            self.down = True
        return vms


def test_a_retry_answered_503_leaves_no_running_vm_behind(
    agent_settings: AgentSettings, ssh_keypair: tuple[Path, str]
) -> None:
    """The realistic variant: the abandoned VM is running again (restart policy
    unless-stopped brought it back with dockerd); the retry takes it over (off the
    leftovers list) and the engine dies before it answers: 503, the backend places the VM
    elsewhere, and this one runs on for ever, unbilled, with the developer's key (not a
    leftover any more, and the start-up recovery only removes unstarted VMs)."""
    engine = FlappingEngine()
    agent = _agent(agent_settings, engine)
    service = agent.app.state.service  # type: ignore[attr-defined]
    try:
        headers = {"Idempotency-Key": "k"}
        engine.die_after_start = True
        assert agent.post("/v1/vms", json=_req(ssh_keypair[1]), headers=headers).status_code >= 500
        (vm_id,) = engine.vms
        assert vm_id in service._leftovers
        engine.down = engine.die_after_start = False
        engine._set(vm_id, "running")  # dockerd restarted it (unless-stopped)
        engine.die_after_list = True
        retry = agent.post("/v1/vms", json=_req(ssh_keypair[1]), headers=headers)
        assert retry.status_code == 503, retry.text  # a status: the backend gives it up
        engine.down = engine.die_after_list = False
        service.remove_leftovers()
        assert vm_id not in engine.vms, "running, untracked: nothing will ever remove it"
    finally:
        agent.__exit__(None, None, None)
