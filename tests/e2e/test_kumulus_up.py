"""`kumulus up --chain-spec FILE`: backend, this machine's agent as a host and a local
chain, with on-chain settlement on and the platform's accounts funded; Ctrl-C stops all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker
import httpx
import pytest

from kumulus.chain.client import ChainClient
from kumulus.core.signing import load_keypair
from kumulus.up import LOCAL_PROVIDER
from tests.e2e.agent_process import free_port, remove_agent_vms
from tests.e2e.chain import SPEC, UNIT
from tests.e2e.test_marketplace import _account

pytestmark = pytest.mark.slow


def test_up_with_a_local_chain(docker_client: docker.DockerClient, tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("backend", "agent", "chain")}
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KUMULUS_")},
        "KUMULUS_BACKEND_DATA_DIR": str(tmp_path / "backend"),
        "KUMULUS_BACKEND_PORT": str(ports["backend"]),
        "KUMULUS_AGENT_STATE_DIR": str(tmp_path / "agent"),
        "KUMULUS_AGENT_PORT": str(ports["agent"]),
        "KUMULUS_AGENT_SSH_BIND": "127.0.0.1",
        "KUMULUS_AGENT_SSH_PORT_MIN": "23630",
        "KUMULUS_AGENT_SSH_PORT_MAX": "23639",
        "KUMULUS_AGENT_STATS_INTERVAL": "1",
        "KUMULUS_BACKEND_HEARTBEAT_RATE_PER_HOST": "600/minute",  # one a second, above
        "KUMULUS_CHAIN_PORT": str(ports["chain"]),
        "KUMULUS_LOG_DIR": str(tmp_path / "logs"),
    }
    out_path = tmp_path / "up.out"
    with out_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kumulus.cli", "up", "--chain-spec", str(SPEC)],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while "Kumulus is up." not in out_path.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, out_path.read_text()
            time.sleep(0.5)
        text = out_path.read_text()
        assert "Kumulus is up." in text and "local development chain at ws://127.0.0.1" in text
        assert "a fresh chain from genesis" in text  # and what it did about the old one
        url = f"http://127.0.0.1:{ports['backend']}"
        with httpx.Client(base_url=url, timeout=30) as anon:
            dev = _account(anon, "up-dev@example.com", "developer")
            info = dev.get("/v1/billing/deposit-info")
            assert info.status_code == 200, info.text
            assert dev.get("/v1/billing").json()["settlement"] == "on"
            dev.close()
        # The local host signs with its own key, delegated by the local provider's wallet,
        # which is not in the agent's state directory.
        password = (tmp_path / "backend" / "local-provider-password").read_text().strip()
        with httpx.Client(base_url=url, timeout=30) as api:
            login = api.post("/v1/auth/login", json={"email": LOCAL_PROVIDER, "password": password})
            api.headers["Authorization"] = f"Bearer {login.json()['token']}"
            (host,) = api.get("/v1/provider/hosts").json()["items"]
            wallet = api.get("/v1/provider/profile").json()["walletAddress"]
        assert host["hostKeyState"] == "delegated" and host["status"] == "online"
        assert host["hostKey"] == load_keypair(tmp_path / "agent" / "host-key").ss58_address
        assert wallet == load_keypair(tmp_path / "backend" / "local-provider-wallet").ss58_address
        assert not (tmp_path / "agent" / "wallet-mnemonic").exists()
        chain = ChainClient(f"ws://127.0.0.1:{ports['chain']}")
        payout = load_keypair(tmp_path / "backend" / "payout-mnemonic").ss58_address
        deposit = load_keypair(tmp_path / "backend" / "deposit-mnemonic").ss58_address
        assert info.json()["address"] == deposit != payout  # deposits never on the payout key
        assert chain.free_balance(payout) >= 100 * UNIT
        chain.close()
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
        remove_agent_vms(docker_client, tmp_path / "agent")
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{ports['chain']}", timeout=2)
