"""Three backend replicas on one PostgreSQL behind nginx (Debian's, in the foreground on a
high port, a minimal upstream config written here): many developers send concurrent
creates with idempotency keys through the proxy to hosts on the fake runtime (agents in
one subprocess, tests/e2e/fake_agents.py), and one replica is killed with SIGKILL mid-run.
Clients retry through the proxy with the same key. Afterwards: each key made at most one
VM, every placed VM exists on exactly its host and nowhere else, no host holds more than
its capacity (the excess was refused `no_host_fits`), and the jobs the dead replica held
run on the others once its leases expired (job_lease_ttl, 3 s here).

Then a real agent (Docker runtime, the real VM image) registers through the proxy, while
the dead replica is still in nginx's upstreams: 20 creates on it, concurrent, each VM made
once and reachable over SSH (a sample of them), what does not fit refused, then every one
deleted and nothing left on the engine or reserved on the host.

CI size: 60 creates on 3 fake hosts + 20 on the real agent (KUMULUS_REPLICAS_REAL_CREATES);
KUMULUS_REPLICAS_CREATES=500 (or more) runs the issue's full size; KUMULUS_REPLICAS_HOSTS
changes the number of fake hosts.

Keys: the replicas share the first one's backend key, copied into the others' data
directories before they start (the deployment's shared-key files do this in production)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import docker
import httpx
import psycopg
import pytest

from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic
from tests.conftest import POSTGRES
from tests.e2e.agent_process import (
    AgentProcess,
    BackendProcess,
    free_port,
    link_wallet,
    make_host_key,
    register_agent,
    remove_agent_vms,
)
from tests.e2e.conftest import ssh

pytestmark = pytest.mark.slow

CREATES = int(os.environ.get("KUMULUS_REPLICAS_CREATES", "60"))  # CI; the issue: 500
HOSTS = int(os.environ.get("KUMULUS_REPLICAS_HOSTS", "3"))
DEVELOPERS = 10
# Each host fits this many 1-vCPU VMs: some creates must be refused, none overcommitted.
HOST_CPU = max(1, (CREATES * 4 // 5) // HOSTS)
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExoKzrGLzzNNO9d+FQVgBOqM2x6VJGMeYFHzkaLIm6b r"
RETRYABLE = {502, 503, 504}
# The real agent: this many creates, of which all but 2 fit its declared capacity.
REAL_CREATES = int(os.environ.get("KUMULUS_REPLICAS_REAL_CREATES", "20"))
REAL_FITS = REAL_CREATES - 2
REAL_SIZE = {"cpu": 0.25, "memory": "128m", "disk": "1g"}
REAL_SSH_SAMPLE = 5  # VMs logged into over SSH (all: KUMULUS_REPLICAS_REAL_CREATES small)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    if not POSTGRES:
        if os.environ.get("KUMULUS_E2E_REQUIRED"):
            pytest.fail("PostgreSQL required: set KUMULUS_TEST_POSTGRES_URL")
        pytest.skip("no PostgreSQL configured (KUMULUS_TEST_POSTGRES_URL)")
    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in POSTGRES else "?"
    yield f"{POSTGRES}{sep}options=-csearch_path%3D{schema}"
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


NGINX_CONF = """
worker_processes 1;
error_log {dir}/error.log warn;
pid {dir}/nginx.pid;
user root;
events {{ worker_connections 2048; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream backends {{
        {servers}
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            # A replica that refuses connections is skipped; a request it already took is
            # not re-sent (POST): the client retries it with its idempotency key.
            proxy_next_upstream error timeout;
            proxy_connect_timeout 2s;
            proxy_read_timeout 120s;
        }}
    }}
}}
"""


@contextmanager
def nginx(directory: Path, upstreams: list[int]) -> Iterator[str]:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        if os.environ.get("KUMULUS_E2E_REQUIRED"):
            pytest.fail("nginx required (apt-get install nginx-light)")
        pytest.skip("no nginx")
    directory.mkdir(parents=True)
    port = free_port()
    servers = "\n        ".join(
        f"server 127.0.0.1:{p} max_fails=1 fail_timeout=3s;" for p in upstreams
    )
    conf = directory / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=directory, servers=servers, port=port))
    proc = subprocess.Popen(
        [binary, "-p", str(directory), "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError(f"nginx did not start: {(directory / 'error.log').read_text()}")
        time.sleep(0.1)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@contextmanager
def fake_agents(tmp: Path, proxy: str, tokens: list[str], wallet: str) -> Iterator[list[dict]]:
    ready = tmp / "agents-ready.json"
    config = {
        "backend_url": proxy,
        "wallet_mnemonic": wallet,
        "ready_file": str(ready),
        "agents": [
            {
                "state_dir": str(tmp / f"agent{i}"),
                "port": free_port(),
                "host_token": token,
                "ssh_ports": [42000 + i * 1000, 42999 + i * 1000],
                "cpu": HOST_CPU,
                "memory": f"{HOST_CPU * 2}g",
                "disk": f"{HOST_CPU * 4}g",
            }
            for i, token in enumerate(tokens)
        ],
    }
    (tmp / "agents.json").write_text(json.dumps(config))
    log = (tmp / "agents.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.e2e.fake_agents", str(tmp / "agents.json")],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={k: v for k, v in os.environ.items() if not k.startswith("KUMULUS_")},
    )
    try:
        deadline = time.monotonic() + 90
        while not ready.exists():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError((tmp / "agents.log").read_text()[-3000:])
            time.sleep(0.2)
        yield json.loads(ready.read_text())["agents"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _login(http: httpx.Client, email: str, role: str) -> dict[str, str]:
    password = "correct horse battery staple"
    http.post("/v1/auth/signup", json={"email": email, "password": password, "role": role})
    resp = http.post("/v1/auth/login", json={"email": email, "password": password})
    resp.raise_for_status()
    return {"Authorization": f"Bearer {resp.json()['token']}"}


@dataclass
class Outcome:
    key: str
    status: int
    vm_id: str | None
    tries: int


def _create(
    proxy: str, headers: dict[str, str], key_id: int, i: int, size: dict[str, object] | None = None
) -> Outcome:
    """One developer's create, retried through the proxy with the same key until it has an
    answer that is not a proxy's or a dying replica's."""
    key = f"create-{i}"
    body = {
        "username": f"u{i}",
        "sshKeyId": key_id,
        **(size or {"cpu": 1, "memory": "1g", "disk": "2g"}),
    }
    with httpx.Client(base_url=proxy, timeout=120) as http:
        for tries in range(1, 40):
            try:
                resp = http.post("/v1/vms", headers={**headers, "Idempotency-Key": key}, json=body)
            except httpx.TransportError:
                time.sleep(0.25)
                continue
            if resp.status_code in RETRYABLE:
                time.sleep(0.25)
                continue
            vm_id = resp.json().get("id") if resp.status_code in (200, 201, 202) else None
            return Outcome(key, resp.status_code, vm_id, tries)
    raise AssertionError(f"{key}: no answer after 40 tries")


def _agent_vm_ids(agent: dict[str, str]) -> list[str]:
    """Every VM the agent has, page by page."""
    ids: list[str] = []
    after: str | None = None
    with httpx.Client(
        base_url=agent["url"], headers={"Authorization": f"Bearer {agent['admin_token']}"}
    ) as http:
        while True:
            params = {"limit": "200", **({"after": after} if after else {})}
            page = http.get("/v1/vms", params=params, timeout=30).json()
            ids += [vm["vmId"] for vm in page["items"]]
            after = page["next"]
            if not after:
                return ids


def _owner_pid(owner: str) -> int:
    return int(owner.split(":")[1])  # host:pid:runner (core/jobs.default_owner)


def test_replicas_survive_a_killed_backend(
    tmp_path: Path,
    postgres_url: str,
    docker_client: docker.DockerClient,
    ssh_keypair: tuple[Path, str],
) -> None:
    env = {
        "KUMULUS_BACKEND_MAINTENANCE_INTERVAL": "1",
        "KUMULUS_BACKEND_JOB_LEASE_TTL": "3",  # a dead holder's leases expire after 3 s
        "KUMULUS_BACKEND_CONVERGE_IN_FLIGHT": "5",  # a dead replica's kicks: the jobs' after 5 s
        "KUMULUS_BACKEND_MAX_VMS": "1000",
        "KUMULUS_BACKEND_SIGNUP_CREDIT": "100000",
        "KUMULUS_BACKEND_HEARTBEAT_TTL": "60",
        # The PostgreSQL server is shared (100 connections): 3 x 10 at most. Past that a
        # replica answers 503 `busy`, which clients retry like the proxy's 502.
        "KUMULUS_BACKEND_DB_POOL_SIZE": "5",
        "KUMULUS_BACKEND_DB_MAX_OVERFLOW": "5",
    }
    replicas = [BackendProcess(tmp_path / f"r{i}", postgres_url, **env) for i in range(3)]
    replicas[0].start()  # migrates, makes the backend key
    for r in replicas[1:]:
        r.data_dir.mkdir(parents=True)
        shutil.copy2(replicas[0].data_dir / "backend-mnemonic", r.data_dir / "backend-mnemonic")
        r.start()
    try:
        with nginx(tmp_path / "nginx", [r.port for r in replicas]) as proxy:
            provider, wallet_mnemonic = _run(tmp_path, proxy, replicas, postgres_url)
            _real_agent(tmp_path, proxy, provider, wallet_mnemonic, postgres_url, ssh_keypair,
                        docker_client)  # fmt: skip
    finally:
        for r in replicas:
            r.stop()


def _run(
    tmp: Path, proxy: str, replicas: list[BackendProcess], db_url: str
) -> tuple[httpx.Client, str]:
    """The fake hosts' round; the provider's client and its wallet's mnemonic."""
    addresses = {httpx.get(r.url + "/healthz").json()["backendAddress"] for r in replicas}
    assert len(addresses) == 1, "the replicas must sign with one key"
    http = httpx.Client(base_url=proxy, timeout=60)
    provider = _login(http, "provider@replicas.example.com", "provider")
    wallet_mnemonic = new_mnemonic()
    provider_http = httpx.Client(base_url=proxy, timeout=60, headers=provider)
    link_wallet(provider_http, keypair_from_mnemonic(wallet_mnemonic)).raise_for_status()
    tokens = [provider_http.post("/v1/provider/host-tokens").json()["token"] for _ in range(HOSTS)]
    developers = []
    for d in range(DEVELOPERS):
        headers = _login(http, f"dev{d}@replicas.example.com", "developer")
        added = http.post("/v1/ssh-keys", headers=headers, json={"name": "k", "publicKey": SSH_KEY})
        added.raise_for_status()
        developers.append((headers, int(added.json()["id"])))

    with fake_agents(tmp, proxy, tokens, wallet_mnemonic) as agents:
        deadline = time.monotonic() + 60
        while True:
            hosts = provider_http.get("/v1/provider/hosts").json()["items"]
            if sum(h["status"] == "online" for h in hosts) == HOSTS:
                break
            assert time.monotonic() < deadline, hosts
            time.sleep(0.5)

        done = Counter[str]()
        lock = threading.Lock()
        killed: list[int] = []

        def create(i: int) -> Outcome:
            headers, key_id = developers[i % DEVELOPERS]
            outcome = _create(proxy, headers, key_id, i)
            with lock:
                done["n"] += 1
            return outcome

        def kill_the_lease_holder() -> None:
            while done["n"] < CREATES // 3:
                time.sleep(0.05)
            with psycopg.connect(db_url) as conn:
                owners = [
                    row[0]
                    for row in conn.execute(
                        "SELECT owner FROM worker_leases WHERE name IN ('meter', 'creates')"
                    )
                ]
            pids = {r.proc.pid for r in replicas if r.proc}
            held = Counter(_owner_pid(o) for o in owners if _owner_pid(o) in pids)
            victim = held.most_common(1)[0][0] if held else replicas[1].proc.pid  # type: ignore[union-attr]
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)

        killer = threading.Thread(target=kill_the_lease_holder, daemon=True)
        killer.start()
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=32) as pool:
            outcomes = list(pool.map(create, range(CREATES)))
        elapsed = time.monotonic() - started
        killer.join(timeout=30)
        assert killed, "no replica was killed"
        dead = next(r for r in replicas if r.proc and r.proc.pid == killed[0])
        survivors = [r for r in replicas if r is not dead]

        statuses = Counter(o.status for o in outcomes)
        assert set(statuses) <= {200, 201, 202, 409}, statuses
        placed = [o for o in outcomes if o.vm_id]
        refused = [o for o in outcomes if o.status == 409]
        capacity = HOST_CPU * HOSTS
        assert len(placed) == min(CREATES, capacity), (statuses, capacity)
        assert len(refused) == CREATES - len(placed)

        # Every placed create reaches its host (the dead replica's kicks too, via the jobs).
        deadline = time.monotonic() + 90
        while True:
            with psycopg.connect(db_url) as conn:
                pending = conn.execute(
                    "SELECT count(*) FROM vms"
                    " WHERE agent_vm_id IS NULL AND intended_state != 'deleted'"
                ).fetchone()[0]
            if pending == 0:
                break
            assert time.monotonic() < deadline, f"{pending} creates never reached their host"
            time.sleep(1)

        with psycopg.connect(db_url) as conn:
            rows = conn.execute(
                "SELECT id, idempotency_key, host_id, agent_vm_id, cpu FROM vms"
            ).fetchall()
        # Each key made exactly one VM, and each answered VM is that one.
        keys = Counter(r[1] for r in rows)
        assert all(n == 1 for n in keys.values()), [k for k, n in keys.items() if n > 1]
        assert {r[0] for r in rows} == {o.vm_id for o in placed}
        # Each VM exists exactly once, on its own host; no host holds another's or extras.
        on_agents: dict[str, set[str]] = {}
        for agent in agents:
            ids = _agent_vm_ids(agent)
            assert len(ids) == len(set(ids))
            on_agents[agent["host_id"]] = set(ids)
        for host_id, ids in on_agents.items():
            mine = {r[3] for r in rows if r[2] == host_id}
            assert ids == mine, (host_id, len(ids), len(mine))
            # Zero overcommit: what the host holds fits its capacity.
            cpu = sum(float(r[4]) for r in rows if r[2] == host_id)
            assert cpu <= HOST_CPU, (host_id, cpu)
        assert sum(len(ids) for ids in on_agents.values()) == len(placed)
        # The jobs went on without the dead replica: once its leases expired, the
        # survivors took them (each run releases its lease; the owner stays the last holder).
        time.sleep(5)  # the lease ttl (3 s), then a run
        pids = {r.proc.pid for r in survivors if r.proc}
        with psycopg.connect(db_url) as conn:
            last = dict(
                conn.execute(
                    "SELECT name, owner FROM worker_leases WHERE name IN ('meter', 'creates')"
                ).fetchall()
            )
        assert {name: _owner_pid(owner) in pids for name, owner in last.items()} == {
            "meter": True,
            "creates": True,
        }
        for r in survivors:
            assert 'kumulus_job_runs_total{job="creates"}' in httpx.get(r.url + "/metrics").text
        retried = sum(o.tries > 1 for o in outcomes)
        print(
            f"\n{CREATES} creates in {elapsed:.1f} s ({CREATES / elapsed:.0f}/s) through nginx to "
            f"3 replicas, one killed after {CREATES // 3}: {len(placed)} placed, "
            f"{len(refused)} refused no_host_fits, {retried} retried; statuses {dict(statuses)}"
        )
    return provider_http, wallet_mnemonic


def _real_agent(
    tmp: Path,
    proxy: str,
    provider: httpx.Client,
    wallet_mnemonic: str,
    db_url: str,
    ssh_keypair: tuple[Path, str],
    docker_client: docker.DockerClient,
) -> None:
    """REAL_CREATES concurrent creates through the proxy onto one real agent (the fake
    hosts are full): REAL_FITS made, each once and reachable, the rest refused; then all
    deleted, nothing left."""
    state = tmp / "real-agent"
    make_host_key(state)
    agent = AgentProcess(
        state,
        (23800, 23800 + REAL_CREATES + 10),
        KUMULUS_AGENT_STATS_INTERVAL="1",
        KUMULUS_AGENT_CPU_CAPACITY=str(REAL_FITS * float(REAL_SIZE["cpu"])),  # type: ignore[arg-type]
        KUMULUS_AGENT_MEMORY_CAPACITY=f"{REAL_FITS * 128 + 64}m",
        KUMULUS_AGENT_DISK_CAPACITY=f"{REAL_FITS + 1}g",
    ).start()
    try:
        token = provider.post("/v1/provider/host-tokens").json()["token"]
        out = register_agent(agent, proxy, token, wallet_mnemonic)
        assert out.returncode == 0, out.stderr
        host_id = out.stdout.split("registered as host ")[1].split(";")[0]
        deadline = time.monotonic() + 60
        while not any(
            h["id"] == host_id and h["status"] == "online"
            for h in provider.get("/v1/provider/hosts").json()["items"]
        ):
            assert time.monotonic() < deadline, "the real agent never came online"
            time.sleep(0.5)
        http = httpx.Client(base_url=proxy, timeout=120)
        headers = _login(http, "real@replicas.example.com", "developer")
        added = http.post(
            "/v1/ssh-keys", headers=headers, json={"name": "k", "publicKey": ssh_keypair[1]}
        )
        added.raise_for_status()
        key_id = int(added.json()["id"])

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:
            outcomes = list(
                pool.map(
                    lambda i: _create(proxy, headers, key_id, 10_000 + i, REAL_SIZE),
                    range(REAL_CREATES),
                )
            )
        created_in = time.monotonic() - started
        statuses = Counter(o.status for o in outcomes)
        placed = [o for o in outcomes if o.vm_id]
        assert len(placed) == REAL_FITS, statuses  # the rest: no_host_fits, never overcommit
        assert statuses[409] == REAL_CREATES - REAL_FITS, statuses
        deadline = time.monotonic() + 90
        while True:  # answered once recorded (202): running once sshd answers
            vms = [http.get(f"/v1/vms/{o.vm_id}", headers=headers).json() for o in placed]
            not_yet = [
                (vm["id"], vm["actualState"], vm.get("failureReason"))
                for vm in vms
                if vm["actualState"] != "running"
            ]
            if not not_yet or any(state == "failed" for _, state, _ in not_yet):
                break
            assert time.monotonic() < deadline, not_yet
            time.sleep(0.5)
        running_in = time.monotonic() - started
        assert not not_yet, [*not_yet, dict(statuses)]
        assert {vm["hostId"] for vm in vms} == {host_id}
        # Each VM exactly once: on the agent, in the engine and in the database.
        agent_view = {"url": agent.url, "admin_token": agent.token}
        on_agent = _agent_vm_ids(agent_view)
        agent_id = (state / "agent-id").read_text().strip()
        label = {"label": f"io.kumulus.agent={agent_id}"}
        containers = docker_client.containers.list(all=True, filters=label, sparse=True)
        with psycopg.connect(db_url) as conn:
            rows = conn.execute(
                "SELECT agent_vm_id, cpu, idempotency_key FROM vms WHERE host_id = %s", (host_id,)
            ).fetchall()
        assert sorted(on_agent) == sorted(r[0] for r in rows) == sorted({r[0] for r in rows})
        assert len(containers) == REAL_FITS and len(Counter(r[2] for r in rows)) == REAL_FITS
        assert sum(float(r[1]) for r in rows) <= REAL_FITS * float(REAL_SIZE["cpu"])  # type: ignore[arg-type]
        # Reachable: the developer logs in with the key the VM was made with.
        for vm in vms[:REAL_SSH_SAMPLE]:
            login = ssh(ssh_keypair[0], vm, "whoami")
            assert login.stdout.strip() == vm["username"], login.stderr

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(
                pool.map(lambda vm: http.delete(f"/v1/vms/{vm['id']}", headers=headers), vms)
            )
        assert {a.status_code for a in answers} <= {200, 202}, [a.text for a in answers]
        deadline = time.monotonic() + 90
        while docker_client.containers.list(all=True, filters=label, sparse=True):
            assert time.monotonic() < deadline, "VMs left on the engine after their deletes"
            time.sleep(0.5)
        # The engine is empty once the agent removed the containers; the backend records
        # each delete when the agent's answer reaches it, a moment later.
        deadline = time.monotonic() + 60
        while True:
            with psycopg.connect(db_url) as conn:
                left = conn.execute(
                    "SELECT count(*) FROM vms WHERE host_id = %s AND actual_state != 'deleted'",
                    (host_id,),
                ).fetchone()
                reserved = conn.execute(
                    "SELECT reserved_cpu, reserved_memory, reserved_disk FROM hosts WHERE id = %s",
                    (host_id,),
                ).fetchone()
            done = left == (0,) and reserved is not None and tuple(reserved) == (0, 0, 0)
            if done or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        deleted_in = time.monotonic() - started
        assert done, (left, reserved)
        assert _agent_vm_ids(agent_view) == []
        print(
            f"real agent: {REAL_CREATES} creates answered in {created_in:.1f} s through nginx "
            f"{dict(statuses)}, {REAL_FITS} running after {running_in:.1f} s, "
            f"{min(REAL_SSH_SAMPLE, REAL_FITS)} SSH logins, deleted in {deleted_in:.1f} s"
        )
    finally:
        agent.stop()
        remove_agent_vms(docker_client, state)
