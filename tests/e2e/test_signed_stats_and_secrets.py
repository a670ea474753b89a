"""The collector signs with the wallet's sr25519 key; the mnemonic never leaks anywhere."""

import json
import subprocess
import time
from pathlib import Path

import docker
import httpx
import pytest

from kumulus.core.signing import (
    Domain,
    NonceCache,
    SignatureError,
    SignedEnvelope,
    keypair_from_mnemonic,
    verify_envelope,
)
from tests.e2e.agent_process import AgentProcess
from tests.e2e.conftest import IMAGE, StatsReceiver


def _wait_for(received: list, count: int, timeout: float = 15) -> None:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while len(received) < count and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(received) >= count, "no signed stats arrived"


def test_stats_arrive_signed_by_the_wallet_and_replays_fail(
    agent: AgentProcess,
    api: httpx.Client,
    make_vm,
    stats_receiver: StatsReceiver,  # type: ignore[no-untyped-def]
    wallet_mnemonic: str,
) -> None:
    vm = make_vm()
    start = len(stats_receiver.received)
    _wait_for(stats_receiver.received, start + 2)
    address = keypair_from_mnemonic(wallet_mnemonic).ss58_address
    assert api.get("/v1/host").json()["walletAddress"] == address
    nonces = NonceCache()
    latest = stats_receiver.received[-1]
    assert latest["path"] == "/v1/hosts/heartbeat"
    env = SignedEnvelope(**latest["body"])
    payload = verify_envelope(env, nonces, expected_address=address, domain=Domain.HEARTBEAT)
    assert payload["docker"]["up"] is True
    assert vm["vmId"] in [v["vmId"] for v in payload["vmStats"]]
    assert payload["vms"]["running"] >= 1
    with pytest.raises(SignatureError, match="replayed"):
        verify_envelope(env, nonces, domain=Domain.HEARTBEAT)
    forged = json.loads(env.model_dump_json())
    forged["payload"]["host"]["cpuPercent"] = 0.0
    with pytest.raises(SignatureError, match="bad signature"):
        verify_envelope(SignedEnvelope(**forged), NonceCache(), domain=Domain.HEARTBEAT)
    # The agent also exposes its latest envelope to its owner.
    latest_api = SignedEnvelope(**api.get("/v1/stats/latest").json())
    assert verify_envelope(
        latest_api, NonceCache(), expected_address=address, domain=Domain.HEARTBEAT
    )


def test_mnemonic_never_appears_in_logs_processes_or_images(
    agent: AgentProcess,
    make_vm,
    stats_receiver: StatsReceiver,
    wallet_mnemonic: str,  # type: ignore[no-untyped-def]
    docker_client: docker.DockerClient,
) -> None:
    make_vm()
    _wait_for(stats_receiver.received, len(stats_receiver.received) + 1)
    secret = wallet_mnemonic.encode()
    one_word_pair = " ".join(wallet_mnemonic.split()[3:5]).encode()  # a fragment, too
    assert agent.proc is not None
    assert secret not in agent.log_path.read_bytes()
    assert one_word_pair not in agent.log_path.read_bytes()
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        for name in ("cmdline", "environ"):
            try:
                data = (proc_dir / name).read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            assert secret not in data, f"mnemonic in /proc/{proc_dir.name}/{name}"
    history = subprocess.run(
        ["docker", "history", "--no-trunc", IMAGE], capture_output=True, check=True
    ).stdout
    assert secret not in history
    for container in docker_client.api.containers(all=True):
        assert (
            secret not in json.dumps(docker_client.api.inspect_container(container["Id"])).encode()
        )
    assert secret not in json.dumps(docker_client.api.inspect_image(IMAGE)).encode()
    assert (agent.state_dir / "wallet-mnemonic").stat().st_mode & 0o777 == 0o600
