"""`kumulus agent run` as a subprocess, the way a provider runs it (tests and bench)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import docker
import httpx
from substrateinterface import Keypair

from kumulus.agent.host_key import ensure_host_key
from kumulus.config import AgentSettings
from kumulus.core.delegation import default_expiry, delegation_text
from tests.generous_limits import GENEROUS_LIMITS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServiceProcess:
    """`kumulus <component> run` in a subprocess: started, awaited on /healthz, stopped."""

    component = ""
    start_timeout = 30.0  # seconds until /healthz answers (more where several start at once)

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = home / f"{self.component}.log"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("KUMULUS_")},
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def _start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kumulus.cli", self.component, "run"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.component} exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.component} did not start: {self.log_path.read_text()[-2000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)


class AgentProcess(ServiceProcess):
    """The provider agent, as a provider would run it."""

    component = "agent"

    def __init__(self, state_dir: Path, port_range: tuple[int, int], **env: str) -> None:
        self.state_dir = state_dir
        self.token = ""
        super().__init__(state_dir, {})
        self.env.update(
            {
                "KUMULUS_AGENT_STATE_DIR": str(state_dir),
                "KUMULUS_AGENT_HOST": "127.0.0.1",
                "KUMULUS_AGENT_PORT": str(self.port),
                "KUMULUS_AGENT_SSH_BIND": "127.0.0.1",
                "KUMULUS_AGENT_SSH_PORT_MIN": str(port_range[0]),
                "KUMULUS_AGENT_SSH_PORT_MAX": str(port_range[1]),
                # The VM image under test, when not the release's (conftest.IMAGE reads the same).
                **(
                    {"KUMULUS_AGENT_IMAGE": os.environ["KUMULUS_AGENT_IMAGE"]}
                    if os.environ.get("KUMULUS_AGENT_IMAGE")
                    else {}
                ),
                **env,
            }
        )

    def start(self) -> AgentProcess:
        self._start()
        self.token = (self.state_dir / "admin-token").read_text().strip()
        return self

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, timeout=120, headers={"Authorization": f"Bearer {self.token}"}
        )


class BackendProcess(ServiceProcess):
    """The backend (SQLite under `data_dir` unless a database URL is given)."""

    component = "backend"

    def __init__(
        self, data_dir: Path, database_url: str | None = None, host: str = "127.0.0.1", **env: str
    ) -> None:
        """`host`: the address it listens on (and is reached at): a bridge's gateway for
        agents in containers."""
        self.data_dir = data_dir
        super().__init__(data_dir, {})
        self.url = f"http://{host}:{self.port}"
        self.env.update(
            {
                "KUMULUS_BACKEND_DATA_DIR": str(data_dir),
                "KUMULUS_BACKEND_HOST": host,
                "KUMULUS_BACKEND_PORT": str(self.port),
                "KUMULUS_BACKEND_PUBLIC_URL": self.url,
                # Production gives none; tests create VMs without depositing first.
                "KUMULUS_BACKEND_SIGNUP_CREDIT": "10",
                # Agents beat every second here, and tests sign up from one address.
                **{f"KUMULUS_BACKEND_{k.upper()}": str(v) for k, v in GENEROUS_LIMITS.items()},
                # Its agents run on this machine (loopback): allowed explicitly.
                "KUMULUS_BACKEND_ALLOW_PRIVATE_AGENTS": "true",
                **({"KUMULUS_DATABASE_URL": database_url} if database_url else {}),
                **env,
            }
        )

    def start(self) -> BackendProcess:
        self._start()
        return self


def delegate(backend_url: str, wallet: Keypair, host_id: str, host_address: str) -> None:
    """The provider's `wallet` delegates the host key `host_address` of `host_id` (what
    `kumulus agent delegate` sends), for hosts a test registers in-process."""
    text = delegation_text(host_id, host_address, default_expiry())
    signature = "0x" + bytes(wallet.sign(text.encode())).hex()
    httpx.post(
        f"{backend_url}/v1/hosts/delegation",
        json={"message": text, "signature": signature},
        timeout=30,
    ).raise_for_status()


def make_host_key(state_dir: Path) -> str:
    """This host's own key (`kumulus agent host-key`), made before the agent starts, as
    provider-setup.sh does: the agent signs with the key it finds at start. Its address."""
    return str(ensure_host_key(AgentSettings(state_dir=state_dir)).ss58_address)


def register_agent(
    agent: AgentProcess, backend_url: str, token: str, mnemonic: str
) -> subprocess.CompletedProcess[str]:
    """What a provider runs on the agent's host: `kumulus agent register` (signed by the
    host key, see make_host_key), then `kumulus agent delegate` with the wallet's
    `mnemonic` on stdin, used once: no wallet is left in the agent's state directory. The
    registration's outcome when it failed, else the delegation's, with both outputs."""

    def kumulus(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "kumulus.cli", "agent", *args],
            env=agent.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    registered = kumulus("register", "--backend", backend_url, "--token", token)
    if registered.returncode != 0:
        return registered
    delegated = kumulus("delegate", "--mnemonic-file", "-", stdin=mnemonic + "\n")
    return subprocess.CompletedProcess(
        delegated.args,
        delegated.returncode,
        registered.stdout + delegated.stdout,
        registered.stderr + delegated.stderr,
    )


def link_wallet(provider: httpx.Client, wallet: Keypair, wrap: bool = False) -> httpx.Response:
    """Link `wallet` to the provider logged in on `provider` by signing its challenge."""
    challenge = provider.post("/v1/provider/wallet/challenge").json()
    message = challenge["message"].encode()
    signed = b"<Bytes>" + message + b"</Bytes>" if wrap else message
    return provider.post(
        "/v1/provider/wallet/link",
        json={
            "challengeId": challenge["challengeId"],
            "address": wallet.ss58_address,
            "signature": "0x" + bytes(wallet.sign(signed)).hex(),
        },
    )


def remove_agent_vms(docker_client: docker.DockerClient, state_dir: Path) -> None:
    """Remove the VMs and networks of the agent whose state is in `state_dir` (test cleanup)."""
    agent_id = (state_dir / "agent-id").read_text().strip()
    label = {"label": f"io.kumulus.agent={agent_id}"}
    for container in docker_client.containers.list(all=True, filters=label):
        container.remove(force=True, v=True)
    for network in docker_client.networks.list(filters=label):
        network.remove()
