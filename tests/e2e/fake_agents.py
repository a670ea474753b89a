"""Several agents on the fake runtime in one process, for tests that need many hosts but
no engine (tests/e2e/test_replicas_survive_a_killed_backend.py): each is the real agent app
(auth, signed answers, capacity, idempotency, heartbeats) over `tests.fakes.FakeRuntime`,
served by uvicorn on its own port, registered with the backend as a host of the provider
whose own host key the wallet delegates (as provider-setup.sh does).

    python -m tests.e2e.fake_agents CONFIG.json

CONFIG: {"backend_url", "wallet_mnemonic", "ready_file", "agents": [{"state_dir", "port",
"host_token", "ssh_ports": [min, max], "cpu", "memory", "disk"}]}. Once every agent is
registered, `ready_file` gets {"agents": [{"url", "host_id", "admin_token"}]}; the process
then serves until it is terminated."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from kumulus.agent.app import create_app
from kumulus.agent.host_key import ensure_host_key
from kumulus.agent.registration import register
from kumulus.config import AgentSettings
from kumulus.core import logs
from kumulus.core.signing import keypair_from_mnemonic
from tests.e2e.agent_process import delegate
from tests.fakes import FakeRuntime


def _serve(app: Any, port: int) -> uvicorn.Server:
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError(f"fake agent on port {port} did not start")
        time.sleep(0.05)
    return server


def main(config_path: str) -> None:
    logs.configure()
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    config = json.loads(Path(config_path).read_text())
    wallet = keypair_from_mnemonic(config["wallet_mnemonic"])
    ready = []
    for spec in config["agents"]:
        state_dir = Path(spec["state_dir"])
        settings = AgentSettings(
            state_dir=state_dir,
            port=spec["port"],
            ssh_bind="127.0.0.1",
            ssh_port_min=spec["ssh_ports"][0],
            ssh_port_max=spec["ssh_ports"][1],
            cpu_capacity=spec["cpu"],
            memory_capacity=spec["memory"],
            disk_capacity=spec["disk"],
            ssh_ready_timeout=0.05,
            lxcfs_dir=state_dir / "lxcfs",
            backend_url=config["backend_url"],
            stats_interval=1.0,
        )
        # The host signs with a key of its own; the wallet only delegates it.
        host_key = ensure_host_key(settings)
        app = create_app(settings, FakeRuntime(), keypair=host_key)
        url = f"http://127.0.0.1:{spec['port']}"
        _serve(app, spec["port"])
        admin = settings.token_path.read_text().strip()
        info = httpx.get(
            f"{url}/v1/host", headers={"Authorization": f"Bearer {admin}"}, timeout=30
        ).json()
        reg = register(
            state_dir=state_dir,
            backend_key_file=settings.backend_key_path,
            keypair=host_key,
            backend_url=config["backend_url"],
            provider_token=spec["host_token"],
            api_url=url,
            public_ip="127.0.0.1",
            host_info=info,
        )
        delegate(config["backend_url"], wallet, reg.host_id, host_key.ss58_address)
        ready.append({"url": url, "host_id": reg.host_id, "admin_token": admin})
    Path(config["ready_file"]).write_text(json.dumps({"agents": ready}))
    threading.Event().wait()  # serve until terminated


if __name__ == "__main__":
    main(sys.argv[1])
