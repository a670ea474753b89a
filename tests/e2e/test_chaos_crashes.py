"""Chaos: SIGKILL of the agent, a backend replica and dockerd at random points while VMs are
created, stopped, started and deleted; after restarts and a reconcile, the invariants hold:

- every VM the backend knows is on its host in the state asked for, or failed with its
  reservation released; a deleted one is gone from the host; one whose create request died
  with its replica before it was placed is retired (deleted, `unplaced_create_grace`, 10 s
  here) instead of staying pending for ever;
- no container of the agent without a live backend record;
- no money made or lost (ledger_check) and no VM charged more than its price over its life;
- no capacity leak: each host's reserved capacity is the sum of its live VMs.

With PostgreSQL (KUMULUS_TEST_POSTGRES_URL, as in CI) the platform runs two backend
replicas on one fresh schema (dropped afterwards), sharing the first one's backend key,
which the agent pins: it takes commands from both. The "backend" victim is one replica,
picked by the seeded rng, and restarted. The developer keeps working through the other
while it is down (the round's operations go on until the other replica has answered one
during the outage; the test fails if none is), as behind a balancing proxy
(FailoverTransport: each request goes to the next replica in turn, and on to the other
when a replica refuses the connection; a request a dying replica already took is not
sent again: it fails, like a proxy's 502).
The agent beats to the replica it registered with (the first): when that one is the
victim its heartbeats fail until it is back. The invariants are read from that PostgreSQL
schema. Without PostgreSQL (a local run) the one backend, on SQLite, is the victim;
KUMULUS_E2E_REQUIRED=1 requires PostgreSQL instead.

Seeded (KUMULUS_CHAOS_SEED, default 14): a failure names its seed and can be replayed.
Runs in CI, 3 rounds (the default: each of agent, backend and dockerd killed once, in a seeded
order); longer runs: KUMULUS_CHAOS_ROUNDS=50. A killed replica's in-flight intents pass
to the jobs once their claims lapse (`converge_in_flight`, 5 s here: its renewals stop with
it) and its job leases expire (5 s here), on the other replica or on itself once restarted.
Marked `disruptive`: one round kills the shared Docker engine (KUMULUS_CHAOS_DOCKERD=0
leaves it alone, for runs next to other e2e tests)."""

from __future__ import annotations

import logging
import os
import random
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import docker
import httpx
import pytest
from bench.common import scratch_schema
from sqlalchemy import select

from kumulus.backend import ledger, ledger_check
from kumulus.backend.db import Database
from kumulus.backend.models import VM, Host, LedgerEntry
from kumulus.core.money import hourly_price
from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic
from tests.conftest import POSTGRES
from tests.e2e.agent_process import (
    AgentProcess,
    BackendProcess,
    link_wallet,
    make_host_key,
    register_agent,
    remove_agent_vms,
)
from tests.e2e.dockerd import start_dockerd, stop_dockerd
from tests.e2e.test_marketplace import _account

ROUNDS = int(os.environ.get("KUMULUS_CHAOS_ROUNDS", "3"))
pytestmark = [
    pytest.mark.disruptive,
    pytest.mark.slow,
    # About 30 s for its 3 rounds (two replicas on PostgreSQL as on one SQLite backend)
    # since a killed replica's intents pass to the jobs within seconds (it took 150 s when
    # they waited 100 s): in CI. KUMULUS_E2E_CHAOS=0 skips it.
    pytest.mark.skipif(
        os.environ.get("KUMULUS_E2E_CHAOS", "1") == "0",
        reason="KUMULUS_E2E_CHAOS=0 skips the chaos test",
    ),
    # Each round adds up to ~10 s of crashes and, for VMs whose tries kept failing, a
    # backoff of up to a minute before they settle.
    pytest.mark.timeout(120 + 60 * ROUNDS),
]

log = logging.getLogger(__name__)

SEED = int(os.environ.get("KUMULUS_CHAOS_SEED", "14"))
KILL_DOCKERD = os.environ.get("KUMULUS_CHAOS_DOCKERD", "1") != "0"
SIZE = {"cpu": 0.25, "memory": "128m", "disk": "1g"}
LIVE_STATES = {"running", "stopped"}


@pytest.fixture
def database_url() -> Iterator[str | None]:
    """A fresh PostgreSQL schema for the replicas (dropped afterwards), or None: SQLite."""
    if not POSTGRES:
        if os.environ.get("KUMULUS_E2E_REQUIRED"):
            pytest.fail("PostgreSQL required: set KUMULUS_TEST_POSTGRES_URL")
        yield None
        return
    with scratch_schema(POSTGRES, "chaos") as (url, _):
        yield url


class FailoverTransport(httpx.BaseTransport):
    """What a balancing proxy in front of the replicas does: each request goes to the next
    replica in turn, and on to the others while they refuse the connection. A request a
    replica took before dying is not sent again (a POST may have been done): it fails."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = [httpx.URL(u) for u in urls]
        self.inner = httpx.HTTPTransport()
        self.turn = 0
        self.lock = threading.Lock()
        self.failovers = 0  # requests a refusing replica passed on to another
        # (monotonic times sent and answered, the replica that answered)
        self.answered: list[tuple[float, float, str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            first = self.turn
            self.turn = (self.turn + 1) % len(self.urls)
        refused: httpx.ConnectError | None = None
        for i in range(len(self.urls)):
            to = self.urls[(first + i) % len(self.urls)]
            request.url = request.url.copy_with(scheme=to.scheme, host=to.host, port=to.port)
            request.headers["Host"] = to.netloc.decode()
            sent = time.monotonic()
            try:
                response = self.inner.handle_request(request)
            except httpx.ConnectError as exc:
                refused = exc
                continue
            with self.lock:
                if refused is not None:
                    self.failovers += 1
                self.answered.append((sent, time.monotonic(), str(to).rstrip("/")))
            return response
        assert refused is not None
        raise refused

    def close(self) -> None:
        self.inner.close()


class Platform:
    """The backend (two replicas on PostgreSQL, or one on SQLite) and one agent, each
    killed and restarted on demand."""

    def __init__(self, tmp_path: Path, database_url: str | None) -> None:
        env = {
            "KUMULUS_BACKEND_HEARTBEAT_TTL": "6",
            "KUMULUS_BACKEND_MAINTENANCE_INTERVAL": "1",
            # A killed replica holds its exclusive jobs' leases for job_lease_ttl (30 s by
            # default) before another run resumes creates and deletes: shorter here.
            "KUMULUS_BACKEND_JOB_LEASE_TTL": "5",
            # Likewise its intents' claims (30 s by default), no longer renewed once killed.
            "KUMULUS_BACKEND_CONVERGE_IN_FLIGHT": "5",
            # A create whose replica was killed before it placed the VM is retired after
            # this (120 s by default): the test waits for it.
            "KUMULUS_BACKEND_UNPLACED_CREATE_GRACE": "10",
            # The PostgreSQL server is shared by other tests: a few connections each.
            "KUMULUS_BACKEND_DB_POOL_SIZE": "5",
            "KUMULUS_BACKEND_DB_MAX_OVERFLOW": "5",
        }
        if database_url:
            self.backends = [
                BackendProcess(tmp_path / f"backend{i}", database_url, **env) for i in range(2)
            ]
            self.db = Database(database_url, pool_size=2, max_overflow=2)
        else:
            self.backends = [BackendProcess(tmp_path / "backend", None, **env)]
            self.db = Database(f"sqlite:///{tmp_path / 'backend' / 'kumulus.db'}")
        self.mnemonic = new_mnemonic()
        self.wallet = keypair_from_mnemonic(self.mnemonic)
        make_host_key(tmp_path / "agent")  # the wallet delegates it and stays off the host
        self.agent = AgentProcess(
            tmp_path / "agent",
            (23660, 23679),
            KUMULUS_AGENT_STATS_INTERVAL="1",
            KUMULUS_AGENT_CPU_CAPACITY="2",
            KUMULUS_AGENT_MEMORY_CAPACITY="2g",
            KUMULUS_AGENT_DISK_CAPACITY="20g",
        )
        for proc in [*self.backends, self.agent]:
            proc.start_timeout = 90  # starts and restarts on a busy shared machine
        self.errors: list[BaseException] = []
        self.killed: list[str] = []  # what each round killed: "agent", "backend 1", ...
        self.transports: list[FailoverTransport] = []
        self.outages: list[tuple[str, float, float]] = []  # a replica's url, killed, back
        self.down: tuple[str, float] | None = None  # the replica down now, killed when

    def start(self) -> None:
        """The agent starts meanwhile (a few seconds each on a busy machine)."""
        agent = threading.Thread(target=self._keeping_failure, args=(self.agent.start,))
        agent.start()
        first, *others = self.backends
        first.start()  # migrates, makes the backend key
        for replica in others:  # the same key (the deployment's shared-key files)
            replica.data_dir.mkdir(parents=True)
            shutil.copy2(first.data_dir / "backend-mnemonic", replica.data_dir / "backend-mnemonic")
            replica.start()
        agent.join()
        if self.errors:
            raise AssertionError("the agent did not start") from self.errors[0]

    def stop(self) -> None:
        self.agent.stop()
        for replica in self.backends:
            replica.stop()
        self.db.engine.dispose()

    def client(self, headers: dict[str, str] | None = None) -> httpx.Client:
        """A client of the backend that fails over between the replicas."""
        transport = FailoverTransport([r.url for r in self.backends])
        self.transports.append(transport)
        return httpx.Client(
            base_url=self.backends[0].url,
            transport=transport,
            headers=headers,
            timeout=30,
        )

    def kill_and_restart(self, victim: str, rng: random.Random) -> None:
        """Runs on a timer thread."""
        self._keeping_failure(lambda: self._kill_and_restart(victim, rng))

    def _keeping_failure(self, action: Callable[[], object]) -> None:
        """`action` on a thread: a failure is kept for the test to raise (a thread's
        exception would only be printed, and the test would go on without an engine)."""
        try:
            action()
        except BaseException as exc:
            self.errors.append(exc)

    def _kill_and_restart(self, victim: str, rng: random.Random) -> None:
        if victim == "dockerd":
            self.killed.append(victim)
            argv = stop_dockerd(signal.SIGKILL)
            time.sleep(rng.uniform(0.2, 1.0))
            start_dockerd(argv)
            return
        proc: AgentProcess | BackendProcess = self.agent
        if victim == "backend":
            replica = rng.randrange(len(self.backends))
            proc = self.backends[replica]
            victim = f"backend {replica}"
        self.killed.append(victim)
        killed = time.monotonic()
        if isinstance(proc, BackendProcess):
            self.down = (proc.url, killed)
        proc.stop(signal.SIGKILL)
        time.sleep(rng.uniform(0.2, 1.0))
        proc._start()
        log.info("chaos: %s back after %.1f s", victim, time.monotonic() - killed)
        if isinstance(proc, BackendProcess):
            self.outages.append((proc.url, killed, time.monotonic()))
            self.down = None

    def _answered(self, url: str, since: float, until: float) -> bool:
        """Whether a replica other than `url` answered a request between the two times."""
        return any(
            sent <= until and done >= since and by != url
            for t in self.transports
            for sent, done, by in t.answered
        )

    def served_while_down(self) -> bool:
        """Whether the other replica answered since the one down now was killed."""
        down = self.down
        return down is not None and self._answered(*down, time.monotonic())

    def check_failover(self) -> None:
        """While a replica was down, the developer's requests were answered by another
        (sent or answered within the outage)."""
        if len(self.backends) < 2:
            return
        for url, killed, back in self.outages:
            assert self._answered(url, killed, back), (
                f"no request answered while {url} was down for {back - killed:.1f} s (seed {SEED})"
            )


def _operations(dev: httpx.Client, key_id: int, rng: random.Random, count: int) -> None:
    """`count` random VM operations; a refused or unanswered one is part of the game."""
    for _ in range(count):
        try:
            vms = [v for v in dev.get("/v1/vms").json()["items"] if v["intendedState"] != "deleted"]
            action = rng.choice(
                ["create", "create", "stop", "start", "delete"] if vms else ["create"]
            )
            if action == "create" or not vms:
                dev.post("/v1/vms", json={"username": "chaos", "sshKeyId": key_id, **SIZE})
            else:
                vm = rng.choice(vms)
                if action == "delete":
                    dev.delete(f"/v1/vms/{vm['id']}")
                else:
                    dev.post(f"/v1/vms/{vm['id']}/{action}")
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(rng.uniform(0, 0.4))


def _settled(vm: VM) -> bool:
    if vm.intended_state == "deleted":
        return vm.actual_state == "deleted"
    return vm.actual_state == vm.intended_state or vm.actual_state == "failed"


def _wait(predicate: Callable[[], bool], timeout: float, what: str | Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what if isinstance(what, str) else what()
        time.sleep(1)


def _containers(docker_client: docker.DockerClient, agent_dir: Path) -> dict[str, str]:
    """{agent vm id: docker status} of the agent's containers."""
    agent_id = (agent_dir / "agent-id").read_text().strip()
    found = docker_client.containers.list(
        all=True, filters={"label": f"io.kumulus.agent={agent_id}"}
    )
    return {c.labels["io.kumulus.vm.id"]: c.status for c in found}


def _check_invariants(
    platform: Platform, docker_client: docker.DockerClient, agent_dir: Path
) -> None:
    on_host = _containers(docker_client, agent_dir)
    with platform.db.session() as s:
        vms = list(s.scalars(select(VM)))
        hosts = list(s.scalars(select(Host)))
        # On its host as asked, or failed with nothing reserved; deleted ones gone.
        for vm in vms:
            where = f"VM {vm.id} ({vm.intended_state}/{vm.actual_state}, seed {SEED})"
            if vm.actual_state == "failed":
                assert not vm.reserved, f"{where}: failed but still reserved"
            elif vm.intended_state == "deleted":
                assert vm.agent_vm_id not in on_host, f"{where}: deleted but on its host"
                assert not vm.reserved, f"{where}: deleted but still reserved"
            else:
                assert vm.agent_vm_id in on_host, f"{where}: not on its host"
                want = "running" if vm.intended_state == "running" else "exited"
                assert on_host[vm.agent_vm_id] == want, (
                    f"{where}: container {on_host[vm.agent_vm_id]}"
                )
                assert vm.reserved, f"{where}: live but not reserved"
        # No container without a live backend record.
        live = {vm.agent_vm_id for vm in vms if vm.intended_state != "deleted"}
        orphans = {vm_id: on_host[vm_id] for vm_id in set(on_host) - live}
        assert not orphans, f"containers without a backend record (seed {SEED}): {orphans}"
        # No capacity leak.
        for host in hosts:
            mine = [vm for vm in vms if vm.host_id == host.id and vm.reserved]
            reserved = (float(host.reserved_cpu), host.reserved_memory, host.reserved_disk)
            live = (
                sum(float(vm.cpu) for vm in mine),
                sum(vm.memory for vm in mine),
                sum(vm.disk for vm in mine),
            )
            leak = f"host {host.id} reserves {reserved}, its live VMs {live} (seed {SEED})"
            assert abs(reserved[0] - live[0]) < 1e-6, leak
            assert reserved[1:] == live[1:], leak
        # No money made or lost, and no VM charged past its price over its whole life.
        assert ledger_check.violations(s) == []
        now = datetime.now(UTC)
        for vm in vms:
            charged = int(vm.accrued) - sum(
                int(amount)
                for amount in s.scalars(
                    select(LedgerEntry.amount).where(
                        LedgerEntry.vm_id == vm.id,
                        LedgerEntry.account_type.in_(ledger.PER_VM),
                        LedgerEntry.kind == "usage",
                    )
                )
            )
            hours = (
                now - vm.created_at.replace(tzinfo=vm.created_at.tzinfo or UTC)
            ).total_seconds() / 3600
            price = hourly_price(
                float(vm.cpu), vm.memory, vm.disk,
                vm.price_cpu_hour, vm.price_memory_gib_hour, vm.price_disk_gib_hour,
            )  # fmt: skip
            assert charged <= price * hours + 1, f"VM {vm.id} charged {charged} > {price}/h"


def test_crashes_at_random_points_break_no_invariant(
    docker_client: docker.DockerClient,
    tmp_path: Path,
    ssh_keypair: tuple[Path, str],
    database_url: str | None,
) -> None:
    rng = random.Random(SEED)
    platform = Platform(tmp_path, database_url)
    anon = platform.client()
    dev: httpx.Client | None = None
    # Each victim once, in a random order, then random ones (a longer run).
    victims = ["agent", "backend"] + (["dockerd"] if KILL_DOCKERD else [])
    schedule = rng.sample(victims, len(victims))
    schedule += [rng.choice(victims) for _ in range(max(ROUNDS - len(victims), 0))]
    try:
        platform.start()
        prov = _account(anon, "chaos-prov@example.com", "provider")
        assert link_wallet(prov, platform.wallet).status_code == 200
        token = prov.post("/v1/provider/host-tokens").json()["token"]
        # Its heartbeats go to the replica it registered with (the first).
        registered = register_agent(
            platform.agent, platform.backends[0].url, token, platform.mnemonic
        )
        assert registered.returncode == 0, registered.stderr
        _wait(
            lambda: any(
                h["status"] == "online" for h in prov.get("/v1/provider/hosts").json()["items"]
            ),
            30,
            "the host never came online",
        )
        with _account(anon, "chaos-dev@example.com", "developer") as signed_up:
            # Through the replicas in turn: a killed one's share goes to the other.
            dev = platform.client({"Authorization": signed_up.headers["Authorization"]})
        key_id = dev.post("/v1/ssh-keys", json={"name": "k", "publicKey": ssh_keypair[1]}).json()[
            "id"
        ]
        # No `Prefer: wait`: answers once recorded, so crashes land mid-convergence.
        dev.timeout = httpx.Timeout(10)
        started = time.monotonic()
        log.info("chaos: set up")
        for round_no, victim in enumerate(schedule[:ROUNDS]):
            delay = rng.uniform(0, 1.5)
            chaos = threading.Timer(
                delay, platform.kill_and_restart, (victim, random.Random(rng.random()))
            )
            chaos.start()
            _operations(dev, key_id, rng, rng.randint(2, 4))
            # And on until a killed replica is down and the other one has answered then
            # (no more: each VM operation loads the machine its restart competes for).
            # Its own rng: the main one's draws stay the seed's.
            more = random.Random(rng.random())
            while (
                victim == "backend"
                and len(platform.backends) > 1
                and chaos.is_alive()
                and not platform.served_while_down()
            ):
                _operations(dev, key_id, more, 1)
            chaos.join()
            if platform.errors:
                raise AssertionError(f"restarting {victim} failed") from platform.errors[0]
            log.info("chaos round %d: %s killed after %.2f s", round_no, platform.killed[-1], delay)

        def settled() -> bool:
            with platform.db.session() as s:
                return all(_settled(vm) for vm in s.scalars(select(VM)))

        log.info(
            "chaos: rounds done after %.1f s (%s killed; %d requests failed over)",
            time.monotonic() - started,
            ", ".join(platform.killed),
            sum(t.failovers for t in platform.transports),
        )
        platform.check_failover()

        def unsettled() -> str:
            with platform.db.session() as s:
                stuck = [
                    f"{vm.id}: {vm.intended_state}/{vm.actual_state} after "
                    f"{vm.converge_attempts} tries, next {vm.converge_after}"
                    for vm in s.scalars(select(VM))
                    if not _settled(vm)
                ]
            return f"VMs did not settle after the crashes (seed {SEED}): {stuck}"

        _wait(settled, 180, unsettled)
        log.info("chaos: settled after %.1f s", time.monotonic() - started)
        time.sleep(3)  # a heartbeat and a reconcile after settling
        _check_invariants(platform, docker_client, tmp_path / "agent")
    finally:
        anon.close()
        if dev is not None:
            dev.close()
        platform.stop()
        if (tmp_path / "agent" / "agent-id").exists():
            remove_agent_vms(docker_client, tmp_path / "agent")
