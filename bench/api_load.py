"""The backend API under load, then under a flood: latency and throughput per route.

The backend (`--replicas` processes of `kumulus backend run` behind Debian's nginx, as
deploy/ runs them: 2 by default on PostgreSQL, from a URL given or
KUMULUS_TEST_POSTGRES_URL; one process without a proxy on SQLite) is driven by locust in
headless mode, as a library, at a stated request rate, in three phases of `--duration`
seconds each, each after `--warmup` seconds whose latencies do not count:

1. **baseline**: `GET /healthz` only, at the same total rate as phase 2: what the server,
   the proxy-less HTTP stack and this load generator cost on this machine.
2. **mix**: honest developers (VM lists, VM gets, a few logins) and hosts (signed
   heartbeats) at the stated rates.
3. **flood**: the same honest traffic, plus hostile clients at stated rates: wrong
   passwords, oversized bodies, hostile VM creates on hosts whose agents trickle one byte at a
   time (slow agents). Honest and hostile clients are told apart the way a real deployment
   tells them apart: by `X-Forwarded-For` from a trusted proxy (the bench plays the proxy on
   127.0.0.1) and by account.

It prints p50/p99 latency and throughput per route with each route's ratio to the baseline's
p99, every status code by client kind, and two verdicts for the flood: honest p99 under 1 s,
and no 5xx anywhere.

    python -m bench.api_load [--duration 20] [--warmup 12] [--users 15] [--rate 1.0]
                             [--hosts 100] [--hostile 20] [--replicas 2]
                             [--database-url URL] [--json] [--backend-env NAME=VALUE ...]

Why a warm-up: every phase starts its clients at once, and the first seconds measure that
burst (each client's TLS handshake; each replica starting its worker threads, which anyio
starts one at a time from the event loop and lets go after 10 s idle: stalls of 4-6 s
with the whole database idle). The burst's statuses still count (a 5xx is a 5xx).

Rates: each honest user sends `--rate` requests/s (constant throughput), so phase 2 offers
about users x rate requests/s; each host heartbeats every 10 s, as agents do; each hostile
user sends 4 requests/s. The backend runs with production's rate limits.
"""

# locust monkey-patches the standard library through gevent: it is imported before anything
# that opens sockets or starts threads.
from locust import FastHttpUser, constant_throughput, events, task  # isort: skip
from locust.env import Environment  # isort: skip

import argparse
import itertools
import json
import os
import random
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gevent
import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tests.e2e.agent_process import BackendProcess
from tests.generous_limits import GENEROUS_LIMITS

from bench.common import add_hosts, cpu_seconds, fresh_schema, touch_hosts
from kumulus.backend.db import Database
from kumulus.config import BackendSettings
from kumulus.core.signing import Domain, keypair_from_mnemonic, new_mnemonic, sign_envelope

PASSWORD = "bench-password-long-enough"
# Developers sign up with this key on file; the VMs it creates never boot (their agents
# are unreachable or slow), which is all a list or a get needs.
SSH_KEY = (
    Ed25519PrivateKey.generate()
    .public_key()
    .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    .decode()
    + " bench@kumulus"
)
ISOLATION = {
    "level": "full",
    "missing": [],
    "usernsRemap": True,
    "firewall": True,
    "diskQuota": True,
    "ioLimits": True,
    "smtpBlocked": True,
    "detail": "",
}

# Just over the backend's default 1 MiB body cap: built once, so the load generator (on the
# same 2 cores) spends its time sending, not allocating.
OVERSIZED = b"{" + b" " * ((1 << 20) + 1024) + b"}"

# Filled in by main() before the users start (locust users are classes).
STATE: dict[str, Any] = {}
STATUS: Counter[tuple[str, str, int]] = Counter()


@events.request.add_listener
def _count_status(request_type: str, name: str, response: Any, exception: Any, **_: Any) -> None:
    kind = name.split(" ", 1)[0]
    code = getattr(response, "status_code", 0) or 0
    STATUS[(STATE.get("phase", "?"), kind, int(code))] += 1


def _say(text: str) -> None:
    print(f"[api_load] {text}", file=sys.stderr, flush=True)


def _xff(prefix: str) -> dict[str, str]:
    return {"X-Forwarded-For": f"{prefix}.{random.randint(0, 255)}.{random.randint(1, 254)}"}


class Baseline(FastHttpUser):
    """The same number of clients and rate as the honest developers, on `/healthz`."""

    wait_time = constant_throughput(1.0)

    @task
    def healthz(self) -> None:
        self.client.get("/healthz", name="baseline GET /healthz")


class Developer(FastHttpUser):
    """An honest developer: mostly reads, now and then a login (argon2 on the server)."""

    wait_time = constant_throughput(1.0)

    def on_start(self) -> None:
        self.account = random.choice(STATE["developers"])
        self.ip = _xff("10.1")

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.account['token']}", **self.ip}

    @task(10)
    def list_vms(self) -> None:
        self.client.get("/v1/vms?limit=50", headers=self._auth(), name="honest GET /v1/vms")

    @task(10)
    def get_vm(self) -> None:
        vm = random.choice(self.account["vms"])
        self.client.get(f"/v1/vms/{vm}", headers=self._auth(), name="honest GET /v1/vms/{id}")

    @task(1)
    def login(self) -> None:
        self.client.post(
            "/v1/auth/login",
            json={"email": self.account["email"], "password": PASSWORD},
            headers=self.ip,
            name="honest POST /v1/auth/login",
        )


class Host(FastHttpUser):
    """A provider's host: a signed heartbeat every 10 s (the agent's interval: faster
    would trip the per-host limit, as it should)."""

    wait_time = constant_throughput(0.1)

    def on_start(self) -> None:
        self.host_id, self.wallet = STATE["hosts"][next(STATE["host_cycle"])]
        self.ip = _xff("10.2")  # each host at an address of its own

    @task
    def heartbeat(self) -> None:
        payload = {
            "kind": "health",
            "hostId": self.host_id,
            "agentVersion": "bench",
            "host": {"cpuPercent": 12.5, "memoryPercent": 40.0, "load": [0.1, 0.2, 0.3]},
            "vms": {"total": 0, "running": 0, "unhealthy": 0},
            "vmStats": [],
            "isolation": ISOLATION,
        }
        envelope = sign_envelope(self.wallet, payload, domain=Domain.HEARTBEAT)
        self.client.post(
            "/v1/hosts/heartbeat",
            json=envelope.model_dump(mode="json", by_alias=True),
            headers=self.ip,
            name="honest POST /v1/hosts/heartbeat",
        )


class Attacker(FastHttpUser):
    """Hostile traffic: password guessing, oversized bodies, VMs on slow agents."""

    wait_time = constant_throughput(4.0)

    def on_start(self) -> None:
        self.ip = _xff("10.66")
        self.account = random.choice(STATE["attackers"])

    @task(4)
    def guess_password(self) -> None:
        victim = random.choice(STATE["developers"])
        self.client.post(
            "/v1/auth/login",
            json={"email": victim["email"], "password": secrets.token_hex(8)},
            headers=self.ip,
            name="hostile POST /v1/auth/login (wrong password)",
        )

    @task(2)
    def oversized(self) -> None:
        self.client.post(
            "/v1/auth/login",
            data=OVERSIZED,
            headers={"Content-Type": "application/json", **self.ip},
            name="hostile POST /v1/auth/login (oversized body)",
        )

    @task(1)
    def create_on_slow_agents(self) -> None:
        self.client.post(
            "/v1/vms",
            json={
                "name": "x",
                "username": "dev",
                "sshKey": SSH_KEY,
                "cpu": 0.1,
                "memory": "128m",
                "disk": "1g",
            },
            headers={"Authorization": f"Bearer {self.account['token']}", **self.ip},
            name="hostile POST /v1/vms (slow agents)",
        )


class TrickleAgent:
    """An agent that accepts every connection and answers one byte every 20 s: it holds
    whatever the backend sends it for as long as the backend lets it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        try:
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}":
                conn.sendall(bytes([byte]))
                time.sleep(20)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.stopped = True
        self.sock.close()


def _run_phase(
    name: str, classes: list[type[FastHttpUser]], counts: dict[str, int], host: str, seconds: float
) -> dict[str, Any]:
    STATE["phase"] = name
    _say(f"phase {name}: {counts} for {seconds:.0f} s")
    env = Environment(user_classes=classes, events=events, host=host)
    for cls in classes:
        cls.host = host
        cls.fixed_count = counts[cls.__name__]
    runner = env.create_local_runner()
    total = sum(counts.values())
    servers, me = STATE["server_pids"], os.getpid()

    def cpu() -> tuple[float, float]:
        return sum(cpu_seconds(pid) for pid in servers), cpu_seconds(me)

    runner.start(total, spawn_rate=float(total))
    # Every client opens its connections (TLS through nginx) at the phase's start: that
    # burst is the load generator's, not the API's. Latencies count after it; statuses
    # (5xx) count from the first request.
    gevent.sleep(STATE["warmup"])
    env.stats.reset_all()
    cpu_before = cpu()
    gevent.sleep(seconds)
    runner.stop()
    cpu_after = cpu()
    # Where the 2 cores went: a backend process runs its Python on one core at most (the
    # GIL), so one near 1.0 per replica is saturated whatever the latencies say.
    routes: dict[str, Any] = {
        "cpu_cores": {
            "backend": round((cpu_after[0] - cpu_before[0]) / seconds, 2),
            "load_generator": round((cpu_after[1] - cpu_before[1]) / seconds, 2),
        }
    }
    for (entry_name, method), entry in sorted(env.stats.entries.items()):
        routes[entry_name] = {
            "method": method,
            "requests": entry.num_requests,
            "failures": entry.num_failures,
            "p50_ms": entry.get_response_time_percentile(0.5),
            "p99_ms": entry.get_response_time_percentile(0.99),
            "rps": round(entry.num_requests / seconds, 1),
        }
    return routes


def _seed(url: str, database_url: str, args: argparse.Namespace, slow_url: str) -> None:
    """Developers with VMs and tokens, hosts with wallets, attackers with accounts."""
    db = Database(database_url)
    wallets = [keypair_from_mnemonic(new_mnemonic()) for _ in range(args.hosts)]
    suffix = secrets.token_hex(4)
    host_ids = [f"h{suffix}{i:05d}" for i in range(args.hosts)]
    add_hosts(db, suffix, host_ids, lambda i: wallets[i].ss58_address, online=True)
    STATE["hosts"] = list(zip(host_ids, wallets, strict=True))
    STATE["host_cycle"] = itertools.cycle(range(args.hosts))
    STATE["slow_hosts"] = (db, f"{suffix}s", [f"s{suffix}{i:05d}" for i in range(args.slow_hosts)])
    STATE["slow_url"] = slow_url

    def account(prefix: str, i: int, vms: int) -> dict[str, Any]:
        email = f"{prefix}{i}-{suffix}@example.com"
        with httpx.Client(base_url=url, timeout=60, verify=STATE.get("verify", True)) as c:
            ip = {"X-Forwarded-For": f"10.200.{i // 250}.{i % 250 + 1}"}
            r = c.post(
                "/v1/auth/signup",
                json={"email": email, "password": PASSWORD, "role": "developer"},
                headers=ip,
            )
            r.raise_for_status()
            r = c.post("/v1/auth/login", json={"email": email, "password": PASSWORD}, headers=ip)
            r.raise_for_status()
            token = r.json()["token"]
            auth = {"Authorization": f"Bearer {token}", **ip}
            ids = []
            # Seeding outlasts the heartbeat TTL and nothing heartbeats yet: keep the hosts
            # online for the creates.
            touch_hosts(db, host_ids)
            for n in range(vms):
                r = c.post(
                    "/v1/vms",
                    json={
                        "name": f"vm{n}",
                        "username": "dev",
                        "sshKey": SSH_KEY,
                        "cpu": 0.1,
                        "memory": "128m",
                        "disk": "1g",
                    },
                    headers={**auth, "Idempotency-Key": f"{email}-{n}"},
                )
                if r.status_code not in (201, 202):
                    raise RuntimeError(f"seeding a VM: {r.status_code} {r.text[:300]}")
                ids.append(r.json()["id"])
        return {"email": email, "token": token, "vms": ids}

    STATE["developers"] = [account("dev", i, args.vms) for i in range(args.developers)]
    STATE["attackers"] = [account("evil", i, 0) for i in range(max(1, args.hostile // 4))]
    db.engine.dispose()


def _add_slow_hosts() -> None:
    db, suffix, ids = STATE["slow_hosts"]
    if not ids:
        return
    wallets = [keypair_from_mnemonic(new_mnemonic()).ss58_address for _ in ids]
    add_hosts(db, suffix, ids, lambda i: wallets[i], online=True)
    from sqlalchemy import update

    from kumulus.backend.models import Host as HostRow

    with db.session() as s:
        s.execute(update(HostRow).where(HostRow.id.in_(ids)).values(api_url=STATE["slow_url"]))
        s.commit()


@contextmanager
def _backends(tmp: Path, database_url: str | None, args: argparse.Namespace) -> Iterator[str]:
    """`--replicas` backend processes on the database, and the URL the clients use: the
    backend's own with one replica, else Debian's nginx in front of them as deploy/nginx
    runs it (TLS, one key set for all, the proxy's X-Forwarded-For trusted)."""
    extra = dict(item.split("=", 1) for item in args.backend_env)
    env = {
        # The bench plays the trusted proxy in front of the backend (or of nginx), so per-IP
        # limits see the clients' addresses; its hosts' agents live on loopback.
        "KUMULUS_BACKEND_TRUSTED_PROXIES": '["127.0.0.1/32"]',  # a JSON list
        "KUMULUS_BACKEND_ALLOW_PRIVATE_AGENTS": "true",
        "KUMULUS_BACKEND_SIGNUP_CREDIT": "1000",
        # The limits a production backend has (the test harness loosens them), so the
        # flood meets what an attacker would: --backend-env overrides them.
        **{
            f"KUMULUS_BACKEND_{name.upper()}": str(BackendSettings.model_fields[name].default)
            for name in GENEROUS_LIMITS
        },
        **extra,
    }
    if args.replicas > 1:
        if database_url is None or not database_url.startswith("postgresql"):
            raise SystemExit("--replicas needs PostgreSQL (--database-url)")
        subprocess.run(
            [sys.executable, "-m", "kumulus.cli", "backend", "init-keys", str(tmp / "keys")],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        env["KUMULUS_BACKEND_KEY_FILE"] = str(tmp / "keys" / "backend-mnemonic")
    db_url = database_url or f"sqlite:///{tmp / 'bench.db'}"
    replicas = [BackendProcess(tmp / f"backend{i}", db_url, **env) for i in range(args.replicas)]
    try:
        replicas[0].start()  # migrates; the others find the schema made
        for replica in replicas[1:]:
            replica.start()
        STATE["server_pids"] = [r.proc.pid for r in replicas if r.proc is not None]
        kind = db_url.split(":", 1)[0]
        if args.replicas == 1:
            _say(f"backend up at {replicas[0].url} ({kind}); seeding")
            yield replicas[0].url
            return
        from tests.nginx_proxy import nginx_proxy

        with nginx_proxy(tmp / "nginx", [f"127.0.0.1:{r.port}" for r in replicas]) as proxy:
            STATE["verify"] = str(proxy.ca_file)
            _say(f"{args.replicas} backends behind nginx at {proxy.url} ({kind}); seeding")
            yield proxy.url
    finally:
        for replica in replicas:
            replica.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per phase")
    parser.add_argument("--users", type=int, default=15, help="honest developer clients")
    parser.add_argument("--rate", type=float, default=1.0, help="requests/s per honest client")
    parser.add_argument("--hosts", type=int, default=100, help="hosts heartbeating every 10 s")
    parser.add_argument(
        "--warmup", type=float, default=12.0, help="seconds per phase before latencies count"
    )
    parser.add_argument("--hostile", type=int, default=20, help="hostile clients, 4 req/s each")
    parser.add_argument("--slow-hosts", type=int, default=5, help="hosts with trickling agents")
    parser.add_argument("--developers", type=int, default=20, help="developer accounts")
    parser.add_argument("--vms", type=int, default=5, help="VMs per developer")
    parser.add_argument("--database-url", default=os.environ.get("KUMULUS_TEST_POSTGRES_URL"))
    parser.add_argument("--backend-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument(
        "--replicas",
        type=int,
        default=None,
        help="backend processes (default 2 on PostgreSQL, 1 on SQLite); more than one run "
        "behind Debian's nginx (deploy/nginx)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.replicas is None:
        postgres = (args.database_url or "").startswith("postgresql")
        args.replicas = 2 if postgres else 1
    STATE["warmup"] = args.warmup
    for cls in (Baseline, Developer):
        cls.wait_time = constant_throughput(args.rate)

    slow = TrickleAgent()
    with (
        tempfile.TemporaryDirectory(prefix="kumulus-bench-") as tmp,
        fresh_schema(args.database_url) as fresh,
        _backends(Path(tmp), fresh, args) as url,
    ):
        database_url = fresh or f"sqlite:///{Path(tmp) / 'bench.db'}"
        try:
            _seed(url, database_url, args, slow.url)
            baseline = _run_phase(
                "baseline", [Baseline], {"Baseline": args.users}, url, args.duration
            )
            mix = _run_phase(
                "mix",
                [Developer, Host],
                {"Developer": args.users, "Host": args.hosts},
                url,
                args.duration,
            )
            _add_slow_hosts()
            flood = _run_phase(
                "flood",
                [Developer, Host, Attacker],
                {"Developer": args.users, "Host": args.hosts, "Attacker": args.hostile},
                url,
                args.duration,
            )
        finally:
            slow.close()

    base_p99 = baseline["baseline GET /healthz"]["p99_ms"] or 1
    for phase in (mix, flood):
        for key, route in phase.items():
            if key == "cpu_cores":
                continue
            route["p99_vs_baseline"] = round((route["p99_ms"] or 0) / base_p99, 1)
    honest_p99 = max(
        (v["p99_ms"] or 0) for k, v in flood.items() if k.startswith("honest") and v["requests"]
    )
    five_xx = sum(n for (_, _, code), n in STATUS.items() if code >= 500)
    statuses = {f"{phase} {kind} {code}": n for (phase, kind, code), n in sorted(STATUS.items())}
    result = {
        "benchmark": "API under load and flood",
        "database": database_url.split(":", 1)[0],
        "replicas": args.replicas,
        "duration_s_per_phase": args.duration,
        "warmup_s_per_phase": args.warmup,
        "offered": {
            "honest_rps": round(args.users * args.rate, 1),
            "heartbeats_rps": round(args.hosts * 0.1, 1),
            "hostile_rps": args.hostile * 4,
            "slow_hosts": args.slow_hosts,
        },
        "baseline": baseline,
        "mix": mix,
        "flood": flood,
        "statuses": statuses,
        "flood_honest_p99_ms": honest_p99,
        "honest_p99_under_1s": honest_p99 < 1000,
        "responses_5xx": five_xx,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"API load: {result['database']}, {args.replicas} backend process(es), "
            f"{args.duration:.0f} s per phase, offered "
            f"{result['offered']}"
        )
        for name, phase in (("baseline", baseline), ("mix", mix), ("flood", flood)):
            print(f"  {name}: CPU cores used {phase['cpu_cores']}")
            for route, v in phase.items():
                if route == "cpu_cores":
                    continue
                ratio = f"  p99 {v['p99_vs_baseline']}x baseline" if "p99_vs_baseline" in v else ""
                print(
                    f"    {route:<48} {v['rps']:7.1f}/s  p50 {v['p50_ms']:6.0f} ms  "
                    f"p99 {v['p99_ms']:6.0f} ms{ratio}"
                )
        print("  statuses: " + ", ".join(f"{k}: {n}" for k, n in statuses.items()))
        verdict = "OK" if result["honest_p99_under_1s"] and five_xx == 0 else "FAILED"
        print(f"  flood: honest p99 {honest_p99:.0f} ms (< 1000), 5xx: {five_xx} -> {verdict}")
    return 0 if result["honest_p99_under_1s"] and five_xx == 0 else 1


if __name__ == "__main__":
    gevent.get_hub()
    sys.exit(main())
