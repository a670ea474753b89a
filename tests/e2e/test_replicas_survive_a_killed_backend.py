"""Three backend replicas on one PostgreSQL behind nginx serving the deployed site
(deploy/nginx, rendered by render-site.sh: TLS with a self-signed certificate that every
client verifies; Debian's nginx in the foreground on high ports). Many developers send
concurrent creates with idempotency keys through the proxy, to hosts on the fake runtime
(agents in one subprocess, tests/e2e/fake_agents.py) and, in the same batch, to a real agent
(Docker runtime, the real VM image); one replica is killed with SIGKILL while both kinds are
going through. Clients retry through the proxy with the same key. Afterwards: each key made
at most one VM, every placed VM exists on exactly its host and nowhere else, no host holds
more than its capacity (the excess was refused `no_host_fits`), the jobs the dead replica
held run on the others once its leases expired (job_lease_ttl, 3 s here), and every VM on
the real agent runs once and its developer logs in over SSH with the key it was made with;
then every one is deleted and nothing is left on the engine or reserved on the host. The
chain jobs' leases moving: tests/e2e/test_chain_jobs_survive_a_killed_replica.py.

Fake and real hosts are told apart by region (the provider's, recorded at registration),
so that each create lands on the kind of host it is counted against.

CI size: 60 creates on 3 fake hosts + 20 on the real agent (KUMULUS_REPLICAS_REAL_CREATES);
KUMULUS_REPLICAS_CREATES=500 (or more) runs the issue's full size; KUMULUS_REPLICAS_HOSTS
changes the number of fake hosts."""

from __future__ import annotations

import json
import os
import signal
import ssl
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
from tests.e2e.replicas import owner_pid, shared_keys, start_all, stop_all
from tests.nginx_proxy import Proxy, nginx_binary, nginx_proxy

pytestmark = pytest.mark.slow

CREATES = int(os.environ.get("KUMULUS_REPLICAS_CREATES", "60"))  # CI; the issue: 500
HOSTS = int(os.environ.get("KUMULUS_REPLICAS_HOSTS", "3"))
DEVELOPERS = 10
# Each host fits this many 1-vCPU VMs: some creates must be refused, none overcommitted.
HOST_CPU = max(1, (CREATES * 4 // 5) // HOSTS)
FAKE_SIZE = {"cpu": 1, "memory": "1g", "disk": "2g", "region": "fake"}
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExoKzrGLzzNNO9d+FQVgBOqM2x6VJGMeYFHzkaLIm6b r"
RETRYABLE = {502, 503, 504}
# The real agent: this many creates, of which all but 2 fit its declared capacity.
REAL_CREATES = int(os.environ.get("KUMULUS_REPLICAS_REAL_CREATES", "20"))
REAL_FITS = REAL_CREATES - 2
REAL_SIZE = {"cpu": 0.25, "memory": "128m", "disk": "1g", "region": "real"}
REAL_CPU = REAL_FITS * 0.25


@contextmanager
def fake_agents(
    tmp: Path, proxy: Proxy, tokens: list[str], wallet: str
) -> Iterator[list[dict[str, str]]]:
    ready = tmp / "agents-ready.json"
    config = {
        "backend_url": proxy.url,
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
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUMULUS_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.e2e.fake_agents", str(tmp / "agents.json")],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**env, "SSL_CERT_FILE": str(proxy.ca_file)},  # they verify the proxy too
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


@contextmanager
def real_agent(
    tmp: Path,
    proxy: Proxy,
    provider: httpx.Client,
    wallet_mnemonic: str,
    docker_client: docker.DockerClient,
) -> Iterator[tuple[AgentProcess, str]]:
    """`kumulus agent run` on Docker, registered and delegated through the proxy (over
    TLS), declaring room for REAL_FITS of REAL_SIZE; (the agent, its host id) once online."""
    state = tmp / "real-agent"
    make_host_key(state)
    agent = AgentProcess(
        state,
        (23800, 23800 + REAL_CREATES + 10),
        KUMULUS_AGENT_STATS_INTERVAL="1",
        KUMULUS_AGENT_CPU_CAPACITY=str(REAL_CPU),
        KUMULUS_AGENT_MEMORY_CAPACITY=f"{REAL_FITS * 128 + 64}m",
        KUMULUS_AGENT_DISK_CAPACITY=f"{REAL_FITS + 1}g",
        SSL_CERT_FILE=str(proxy.ca_file),
    ).start()
    try:
        token = provider.post("/v1/provider/host-tokens").json()["token"]
        out = register_agent(agent, proxy.url, token, wallet_mnemonic)
        assert out.returncode == 0, out.stderr
        host_id = out.stdout.split("registered as host ")[1].split(";")[0]
        _wait_online(provider, {host_id})
        yield agent, host_id
    finally:
        agent.stop()
        remove_agent_vms(docker_client, state)


def _wait_online(provider: httpx.Client, host_ids: set[str] | int) -> None:
    """Until the hosts `host_ids` (or that many hosts) are online."""
    deadline = time.monotonic() + 60
    while True:
        hosts = provider.get("/v1/provider/hosts").json()["items"]
        online = {h["id"] for h in hosts if h["status"] == "online"}
        if (len(online) >= host_ids) if isinstance(host_ids, int) else host_ids <= online:
            return
        assert time.monotonic() < deadline, hosts
        time.sleep(0.5)


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
    sent: float  # monotonic: the first try
    answered: float  # monotonic: the answer kept


def _create(
    proxy: Proxy,
    tls: ssl.SSLContext,
    headers: dict[str, str],
    key_id: int,
    i: int,
    size: dict[str, object],
) -> Outcome:
    """One developer's create, retried through the proxy with the same key until it has an
    answer that is not a proxy's or a dying replica's."""
    key = f"create-{i}"
    body = {"username": f"u{i}", "sshKeyId": key_id, **size}
    sent = time.monotonic()
    with proxy.client(tls=tls, timeout=120) as http:
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
            return Outcome(key, resp.status_code, vm_id, tries, sent, time.monotonic())
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


def test_replicas_survive_a_killed_backend(
    tmp_path: Path,
    replica_database: str,
    docker_client: docker.DockerClient,
    ssh_keypair: tuple[Path, str],
) -> None:
    nginx_binary()
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
        **shared_keys(tmp_path / "keys"),  # one set of platform keys for every replica
    }
    replicas = [BackendProcess(tmp_path / f"r{i}", replica_database, **env) for i in range(3)]
    with nginx_proxy(tmp_path / "nginx", [f"127.0.0.1:{r.port}" for r in replicas]) as proxy:
        for replica in replicas:
            replica.env["KUMULUS_BACKEND_PUBLIC_URL"] = proxy.url
        try:
            start_all(replicas)
            _run(tmp_path, proxy, replicas, replica_database, ssh_keypair, docker_client)
        finally:
            stop_all(replicas)


def _run(
    tmp: Path,
    proxy: Proxy,
    replicas: list[BackendProcess],
    db_url: str,
    ssh_keypair: tuple[Path, str],
    docker_client: docker.DockerClient,
) -> None:
    addresses = {httpx.get(r.url + "/healthz").json()["backendAddress"] for r in replicas}
    assert len(addresses) == 1, "the replicas must sign with one key"
    tls = proxy.tls()
    http = proxy.client(tls=tls)
    provider = proxy.client(
        tls=tls, headers=_login(http, "provider@replicas.example.com", "provider")
    )
    wallet_mnemonic = new_mnemonic()
    link_wallet(provider, keypair_from_mnemonic(wallet_mnemonic)).raise_for_status()

    def region(name: str) -> None:  # of the hosts registered from now on
        profile = {"name": "", "contact": "", "country": "", "region": name}
        provider.put("/v1/provider/profile", json=profile).raise_for_status()

    region("fake")
    tokens = [provider.post("/v1/provider/host-tokens").json()["token"] for _ in range(HOSTS)]
    developers = []
    for d in range(DEVELOPERS):
        headers = _login(http, f"dev{d}@replicas.example.com", "developer")
        added = http.post("/v1/ssh-keys", headers=headers, json={"name": "k", "publicKey": SSH_KEY})
        added.raise_for_status()
        developers.append((headers, int(added.json()["id"])))
    real_dev = _login(http, "real@replicas.example.com", "developer")
    added = http.post(
        "/v1/ssh-keys", headers=real_dev, json={"name": "k", "publicKey": ssh_keypair[1]}
    )
    added.raise_for_status()
    real_key_id = int(added.json()["id"])

    with fake_agents(tmp, proxy, tokens, wallet_mnemonic) as agents:
        _wait_online(provider, HOSTS)
        region("real")
        with real_agent(tmp, proxy, provider, wallet_mnemonic, docker_client) as (agent, host_id):
            fake, real, killed_at, dead = _batch(proxy, tls, replicas, db_url, developers,
                                                 real_dev, real_key_id)  # fmt: skip
            survivors = [r for r in replicas if r is not dead]
            _fake_hosts_hold_exactly_theirs(agents, db_url, fake, real)
            _jobs_moved(db_url, survivors)
            real_in = _real_agent_vms(http, real_dev, agent, host_id, real, db_url, ssh_keypair,
                                      docker_client)  # fmt: skip
            retried = sum(o.tries > 1 for o in fake + real)
            statuses = Counter(o.status for o in fake)
            print(
                f"\n{CREATES} creates on {HOSTS} fake hosts + {REAL_CREATES} on a real agent, "
                f"through nginx (TLS) to 3 replicas, one killed after {CREATES // 3}: "
                f"fake {dict(statuses)}, real {dict(Counter(o.status for o in real))}, "
                f"{retried} retried; real creates answered before the kill "
                f"{sum(o.answered < killed_at for o in real)}, sent after it "
                f"{sum(o.sent > killed_at for o in real)}; {real_in}"
            )


def _batch(
    proxy: Proxy,
    tls: ssl.SSLContext,
    replicas: list[BackendProcess],
    db_url: str,
    developers: list[tuple[dict[str, str], int]],
    real_dev: dict[str, str],
    real_key_id: int,
) -> tuple[list[Outcome], list[Outcome], float, BackendProcess]:
    """CREATES creates on fake hosts and REAL_CREATES on the real agent, spread through one
    concurrent batch; the holder of the `meter`/`creates` leases is killed once a third of
    the fake ones are answered. (fake outcomes, real outcomes, when the kill was, the dead.)"""
    every = max(1, (CREATES + REAL_CREATES) // REAL_CREATES)
    tasks = [("fake", i) for i in range(CREATES)]
    for j in range(REAL_CREATES):
        tasks.insert(min(len(tasks), j * every + every // 2), ("real", j))
    done = Counter[str]()
    lock = threading.Lock()
    killed: list[tuple[int, float]] = []

    def create(task: tuple[str, int]) -> tuple[str, Outcome]:
        kind, i = task
        if kind == "real":
            return kind, _create(proxy, tls, real_dev, real_key_id, 10_000 + i, REAL_SIZE)
        headers, key_id = developers[i % DEVELOPERS]
        outcome = _create(proxy, tls, headers, key_id, i, FAKE_SIZE)
        with lock:
            done["n"] += 1
        return kind, outcome

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
        held = Counter(owner_pid(o) for o in owners if owner_pid(o) in pids)
        victim = held.most_common(1)[0][0] if held else replicas[1].proc.pid  # type: ignore[union-attr]
        os.kill(victim, signal.SIGKILL)
        killed.append((victim, time.monotonic()))

    killer = threading.Thread(target=kill_the_lease_holder, daemon=True)
    killer.start()
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=32) as pool:
        outcomes = list(pool.map(create, tasks))
    elapsed = time.monotonic() - started
    killer.join(timeout=30)
    assert killed, "no replica was killed"
    victim, killed_at = killed[0]
    dead = next(r for r in replicas if r.proc and r.proc.pid == victim)
    fake = [o for kind, o in outcomes if kind == "fake"]
    real = [o for kind, o in outcomes if kind == "real"]
    print(f"\n{len(tasks)} creates answered in {elapsed:.1f} s ({len(tasks) / elapsed:.0f}/s)")
    # The kill fell inside the real agent's creates: some were answered before it, some
    # were sent after it (those that fit all run below, each once).
    assert any(o.answered < killed_at for o in real), "every real create came after the kill"
    assert any(o.sent > killed_at for o in real), "every real create came before the kill"
    return fake, real, killed_at, dead


def _fake_hosts_hold_exactly_theirs(
    agents: list[dict[str, str]], db_url: str, fake: list[Outcome], real: list[Outcome]
) -> None:
    statuses = Counter(o.status for o in fake)
    assert set(statuses) <= {200, 201, 202, 409}, statuses
    placed = [o for o in fake if o.vm_id]
    refused = [o for o in fake if o.status == 409]
    capacity = HOST_CPU * HOSTS
    assert len(placed) == min(CREATES, capacity), (statuses, capacity)
    assert len(refused) == CREATES - len(placed)

    # Every placed create reaches its host (the dead replica's kicks too, via the jobs).
    deadline = time.monotonic() + 120
    while True:
        with psycopg.connect(db_url) as conn:
            pending = conn.execute(
                "SELECT count(*) FROM vms WHERE agent_vm_id IS NULL AND intended_state != 'deleted'"
            ).fetchone()[0]  # type: ignore[index]
        if pending == 0:
            break
        assert time.monotonic() < deadline, f"{pending} creates never reached their host"
        time.sleep(1)

    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT id, idempotency_key, host_id, agent_vm_id, cpu FROM vms"
        ).fetchall()
    # Each key made exactly one VM, and each answered VM is that one.
    keys = Counter((r[1]) for r in rows)
    assert all(n == 1 for n in keys.values()), [k for k, n in keys.items() if n > 1]
    assert {r[0] for r in rows} == {o.vm_id for o in placed + real if o.vm_id}
    # Each VM exists exactly once, on its own host; no host holds another's or extras.
    on_agents: dict[str, set[str]] = {}
    for agent in agents:
        ids = _agent_vm_ids(agent)
        assert len(ids) == len(set(ids))
        on_agents[agent["host_id"]] = set(ids)
    for host_id, held in on_agents.items():
        mine = {r[3] for r in rows if r[2] == host_id}
        assert held == mine, (host_id, len(held), len(mine))
        # Zero overcommit: what the host holds fits its capacity.
        cpu = sum(float(r[4]) for r in rows if r[2] == host_id)
        assert cpu <= HOST_CPU, (host_id, cpu)
    assert sum(len(ids) for ids in on_agents.values()) == len(placed)


def _jobs_moved(db_url: str, survivors: list[BackendProcess]) -> None:
    """The jobs went on without the dead replica: once its leases expired, the survivors
    took them (each run releases its lease; the owner stays the last holder)."""
    time.sleep(5)  # the lease ttl (3 s), then a run
    pids = {r.proc.pid for r in survivors if r.proc}
    with psycopg.connect(db_url) as conn:
        last: dict[str, str] = dict(
            conn.execute(
                "SELECT name, owner FROM worker_leases WHERE name IN ('meter', 'creates')"
            ).fetchall()
        )
    assert {name: owner_pid(owner) in pids for name, owner in last.items()} == {
        "meter": True,
        "creates": True,
    }
    for r in survivors:
        assert 'kumulus_job_runs_total{job="creates"}' in httpx.get(r.url + "/metrics").text


def _real_agent_vms(
    http: httpx.Client,
    headers: dict[str, str],
    agent: AgentProcess,
    host_id: str,
    outcomes: list[Outcome],
    db_url: str,
    ssh_keypair: tuple[Path, str],
    docker_client: docker.DockerClient,
) -> str:
    """REAL_FITS of the real agent's creates made, each once, running and reachable over
    SSH; the rest refused; then all deleted, nothing left. A summary of the timings."""
    started = min(o.sent for o in outcomes)
    statuses = Counter(o.status for o in outcomes)
    placed = [o for o in outcomes if o.vm_id]
    assert len(placed) == REAL_FITS, statuses  # the rest: no_host_fits, never overcommit
    assert statuses[409] == REAL_CREATES - REAL_FITS, statuses
    deadline = time.monotonic() + 120
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
    agent_id = (agent.state_dir / "agent-id").read_text().strip()
    label = {"label": f"io.kumulus.agent={agent_id}"}
    containers = docker_client.containers.list(all=True, filters=label, sparse=True)
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT agent_vm_id, cpu, idempotency_key FROM vms WHERE host_id = %s", (host_id,)
        ).fetchall()
    assert sorted(on_agent) == sorted(r[0] for r in rows) == sorted({r[0] for r in rows})
    assert len(containers) == REAL_FITS and len(Counter(r[2] for r in rows)) == REAL_FITS
    assert sum(float(r[1]) for r in rows) <= REAL_CPU
    # Reachable: the developer logs in to each with the key the VM was made with.
    with ThreadPoolExecutor(max_workers=6) as pool:
        logins = list(pool.map(lambda vm: ssh(ssh_keypair[0], vm, "whoami"), vms))
    for vm, login in zip(vms, logins, strict=True):
        assert login.stdout.strip() == vm["username"], (vm["id"], login.stderr)

    deleting = time.monotonic()
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
    assert done, (left, reserved)
    assert _agent_vm_ids(agent_view) == []
    return (
        f"real agent: {REAL_FITS} running {running_in:.1f} s after the first create, "
        f"{len(vms)} SSH logins, deleted in {time.monotonic() - deleting:.1f} s"
    )
