"""The provider setup script, run for real on this machine as root and non-interactively,
the way the console tells providers to run it (download it, check its SHA-256 with
`sha256sum -c`, run it with the one-time token). It refuses a plain-http backend without
--insecure-http and an agent package that does not match the SHA-256 it carries; then the
host registers, signed heartbeats arrive, a VM placed through the backend answers over SSH;
a second run changes nothing; the mnemonic shows up in no log, no process list and no image
history; --uninstall stops the agent and removes its VMs."""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
import time
from pathlib import Path

import docker
import httpx
import pytest

from kumulus.config import AgentSettings
from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic, write_secret_file
from tests.e2e.agent_process import BackendProcess, free_port, link_wallet
from tests.e2e.conftest import ssh
from tests.e2e.test_marketplace import _account, _wait

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


class ProcessWatch:
    """Samples every process's command line while the script runs."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=False)
            self.seen.update(out.stdout.splitlines())
            time.sleep(0.05)

    def __enter__(self) -> ProcessWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def test_setup_script_turns_this_machine_into_a_provider_host(
    docker_client: docker.DockerClient, tmp_path: Path, ssh_keypair: tuple[Path, str]
) -> None:
    backend = BackendProcess(tmp_path / "backend", KUMULUS_BACKEND_HEARTBEAT_TTL="6").start()
    mnemonic = new_mnemonic()
    wallet = keypair_from_mnemonic(mnemonic)
    anon = httpx.Client(base_url=backend.url, timeout=60)
    prov = _account(anon, "setup@example.com", "provider")
    prov.put("/v1/provider/profile", json={"name": "Acme", "country": "DE", "region": "eu"})
    assert link_wallet(prov, wallet).status_code == 200
    token = prov.post("/v1/provider/host-tokens").json()["token"]
    secret = tmp_path / "mnemonic"
    write_secret_file(secret, mnemonic)

    prefix, state, logs = tmp_path / "opt", tmp_path / "state", tmp_path / "log"
    port = free_port()
    args = [
        "--token", token, "--mnemonic-file", str(secret), "--prefix", str(prefix),
        "--state-dir", str(state), "--log-dir", str(logs), "--listen", "127.0.0.1",
        "--port", str(port), "--public-ip", "127.0.0.1", "--ssh-ports", "23620-23629",
        "--service-name", "kumulus-agent-test", "--no-systemd", "--yes",
    ]  # fmt: skip

    digest = hashlib.sha256(httpx.get(f"{backend.url}/provider-setup.sh").content).hexdigest()
    workdir = tmp_path / "download"
    workdir.mkdir()

    def run_script(
        *extra: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        # The console's command (as root already: no sudo here), in a scratch directory.
        command = (
            f"curl -fsSL -o kumulus-setup.sh {backend.url}/provider-setup.sh && "
            f"echo '{digest} *kumulus-setup.sh' | sha256sum -c - && "
            "bash kumulus-setup.sh " + " ".join([*args, *extra])
        )
        return subprocess.run(
            ["bash", "-c", command], capture_output=True, text=True, timeout=800, check=False,
            cwd=workdir, env={**os.environ, **(env or {})},
        )  # fmt: skip

    refused = run_script()  # plain http, not acknowledged
    assert refused.returncode != 0 and "refusing the plain-http backend" in refused.stderr
    tampered = run_script("--insecure-http", env={"KUMULUS_AGENT_SHA256": "0" * 64})
    assert tampered.returncode != 0, tampered.stderr[-2000:]
    assert "does not match the SHA-256" in tampered.stderr
    args.append("--insecure-http")

    try:
        with ProcessWatch() as watch:
            first = run_script()
        assert first.returncode == 0, first.stderr[-3000:]
        assert "registered as host" in first.stderr
        assert "no systemd here: started the agent under a simple supervisor" in first.stderr
        assert "lxcfs answers on /var/lib/lxcfs" in first.stderr  # VMs see their own size

        # The host is online with signed heartbeats.
        host = _wait(
            lambda: [
                h for h in prov.get("/v1/provider/hosts").json()["items"] if h["status"] == "online"
            ]
        )[0]
        assert host["publicIp"] == "127.0.0.1" and host["cpu"] > 0

        # A developer's VM lands on it and answers over SSH.
        dev = _account(anon, "setup-dev@example.com", "developer")
        vm = dev.post(
            "/v1/vms",
            json={
                "username": "erin",
                "sshKey": ssh_keypair[1],
                "cpu": 0.5,
                "memory": "256m",
                "disk": "1g",
            },
        )
        assert vm.status_code == 201, vm.text
        vm_json = vm.json()
        assert vm_json["hostId"] == host["id"] and vm_json["actualState"] == "running"
        assert ssh(ssh_keypair[0], vm_json, "whoami").stdout.strip() == "erin"

        # A second run is a no-op: same supervisor, same files, nothing restarted.
        pid_before = (prefix / "run" / "kumulus-agent-test.pid").read_text()
        env_before = (prefix / "agent.env").stat().st_mtime_ns
        with ProcessWatch() as watch2:
            second = run_script()
        assert second.returncode == 0, second.stderr[-3000:]
        assert "is up to date" in second.stderr
        assert "already registered" in second.stderr
        assert "nothing changed" in second.stderr
        assert (prefix / "run" / "kumulus-agent-test.pid").read_text() == pid_before
        assert (prefix / "agent.env").stat().st_mtime_ns == env_before
        assert ssh(ssh_keypair[0], vm_json, "true").returncode == 0

        # The wallet is used once, to delegate the host's own key, and stored nowhere: no
        # file on the host, no log, no process, no image layer. The host keeps its key only.
        assert host["hostKeyState"] == "delegated" and host["hostKey"] != wallet.ss58_address
        assert not (state / "wallet-mnemonic").exists()
        assert (state / "host-key").stat().st_mode & 0o777 == 0o600
        phrase = " ".join(mnemonic.split())
        ours = [p for p in prefix.rglob("*") if "venv" not in p.relative_to(prefix).parts]
        for path in [*state.rglob("*"), *ours]:
            if path.is_file() and not path.is_symlink() and path.stat().st_size < 1 << 20:
                assert phrase.split()[0] + " " + phrase.split()[1] not in path.read_text(
                    errors="replace"
                ), path
        for line in watch.seen | watch2.seen:
            assert phrase not in line and " ".join(phrase.split()[:3]) not in line, line
        for path in [*logs.rglob("*"), *prefix.rglob("*.env"), *state.rglob("*.log")]:
            if path.is_file():
                text = path.read_text(errors="replace")
                assert (
                    phrase not in text and phrase.split()[0] + " " + phrase.split()[1] not in text
                ), path
        assert phrase not in first.stderr + first.stdout + second.stderr + second.stdout
        history = subprocess.run(
            ["docker", "history", "--no-trunc", AgentSettings().image],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert phrase.split()[0] + " " + phrase.split()[1] not in history
    finally:
        gone = run_script("--uninstall")
        assert gone.returncode == 0, gone.stderr[-2000:]
        assert "removed 1 VM(s)" in gone.stderr or "VM" not in gone.stderr
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
        for client in (anon, prov):
            client.close()
        backend.stop()
