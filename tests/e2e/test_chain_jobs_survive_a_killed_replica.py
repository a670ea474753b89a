"""Payouts and anchors go on after the replica sending them dies (issue 14): three backend
replicas on one PostgreSQL, with the platform's keys shared and settlement on the real dev
chain (chopsticks). The replica holding both the `payout-sender` and the `anchors` leases
is frozen mid-run (SIGSTOP, so that it surely holds them) and killed with SIGKILL. A payout
requested afterwards is sent by another replica only once the dead one's lease expired
(job_lease_ttl, 3 s here) and arrives on chain exactly once (one transfer from the payout
key, the provider's balance on chain is the amount); anchors go on from another replica,
on chain, signed by the anchor key, continuing from the last anchor's period.

The unit-level version with a stalling fake chain is
tests/backend/test_payout_and_anchor_leases_are_fenced.py; the replicas serving clients
through nginx while one dies: tests/e2e/test_replicas_survive_a_killed_backend.py."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import NamedTuple, TypeVar

import httpx
import psycopg
import pytest

from kumulus.backend.anchors import PREFIX
from kumulus.backend.db import Database
from kumulus.backend.jobs.payouts import SCHEDULE
from kumulus.chain.client import ChainClient
from kumulus.chain.devnode import DevNode
from kumulus.core.signing import keypair_from_mnemonic, load_keypair, new_mnemonic
from tests.backend.billing_fixtures import account, earnings, host
from tests.e2e.agent_process import BackendProcess, link_wallet
from tests.e2e.chain import UNIT, fund
from tests.e2e.replicas import owner_pid, shared_keys, start_all, stop_all

pytestmark = pytest.mark.slow

TTL = 3.0  # job_lease_ttl: a dead holder's leases expire after this
LEASES = ("payout-sender", "anchors")
PASSWORD = "correct horse battery staple"
T = TypeVar("T")


def _wait(what: str, check: Callable[[], T | None], timeout: float = 60) -> T:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)
    return found


def test_payouts_and_anchors_move_to_another_replica_when_theirs_is_killed(
    dev_chain: DevNode, tmp_path: Path, replica_database: str
) -> None:
    keys = shared_keys(tmp_path / "keys")
    payout_key = load_keypair(Path(keys["KUMULUS_BACKEND_PAYOUT_KEY_FILE"])).ss58_address
    anchor_key = load_keypair(Path(keys["KUMULUS_BACKEND_ANCHOR_KEY_FILE"])).ss58_address
    fund(dev_chain, payout_key, 10 * UNIT)  # above the float: no top-up from the deposit key
    fund(dev_chain, anchor_key, UNIT)  # remark fees
    env = {
        "KUMULUS_BACKEND_CHAIN_URL": dev_chain.url,
        "KUMULUS_BACKEND_MAINTENANCE_INTERVAL": "1",
        "KUMULUS_BACKEND_JOB_LEASE_TTL": str(TTL),
        "KUMULUS_BACKEND_ANCHOR_INTERVAL": "3",
        "KUMULUS_BACKEND_PAYOUT_FLOAT": "5",
        "KUMULUS_BACKEND_DB_POOL_SIZE": "5",
        "KUMULUS_BACKEND_DB_MAX_OVERFLOW": "5",
        **keys,
    }
    replicas = [BackendProcess(tmp_path / f"r{i}", replica_database, **env) for i in range(3)]
    chain = ChainClient(dev_chain.url)
    try:
        start_all(replicas)
        _kill_the_sender_then_pay_and_anchor(replicas, replica_database, chain, anchor_key)
    finally:
        stop_all(replicas)
        chain.close()


def _kill_the_sender_then_pay_and_anchor(
    replicas: list[BackendProcess], db_url: str, chain: ChainClient, anchor_key: str
) -> None:
    # Scheduled payouts of all earnings run once at start (nothing earned yet), then once a
    # day: only the payout asked for below is paid.
    _wait("the scheduled payouts' first run", lambda: _leases(db_url).get(SCHEDULE))
    anon = httpx.Client(base_url=replicas[0].url, timeout=60)
    email = "earner@replicas.example.com"
    anon.post("/v1/auth/signup", json={"email": email, "password": PASSWORD, "role": "provider"})
    token = anon.post("/v1/auth/login", json={"email": email, "password": PASSWORD}).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    wallet = keypair_from_mnemonic(new_mnemonic())
    with httpx.Client(base_url=replicas[0].url, timeout=60, headers=headers) as provider:
        link_wallet(provider, wallet).raise_for_status()
        provider_id = provider.get("/v1/me").json()["id"]
    db = Database(db_url, pool_size=1, max_overflow=1)
    with db.session() as s:  # earnings, as metering leaves them; a host to anchor scores of
        earnings(s, provider_id, 3 * UNIT)
        host(s, account(s, "provider"))
        s.commit()
    db.engine.dispose()
    _wait("a first anchor", lambda: _anchors(db_url))

    searching = time.monotonic()
    victim, expiry = _freeze_and_kill_the_holder(replicas, db_url)
    searched = time.monotonic() - searching
    survivors = [r for r in replicas if r is not victim]
    killed_in = chain.finalized_number()

    # A payout asked of a survivor after the kill: sent once the dead holder's lease expired.
    with httpx.Client(base_url=survivors[0].url, timeout=60, headers=headers) as provider:
        asked = provider.post("/v1/provider/payouts", json={"amount": "2"})
        assert asked.status_code == 202, asked.text
        _wait(
            "the payout to be paid",
            lambda: [
                p
                for p in provider.get("/v1/provider/payouts").json()["items"]
                if p["status"] == "paid"
            ],
        )
    time.sleep(TTL + 2)  # room for a second send, if anything were to send it again
    with psycopg.connect(db_url) as conn:
        payouts = conn.execute("SELECT status, submitted_at, nonce FROM payouts").fetchall()
    assert [p[0] for p in payouts] == ["paid"], payouts
    assert payouts[0][1].timestamp() >= expiry["payout-sender"], "sent under the dead's lease"
    assert chain.free_balance(wallet.ss58_address) == 2 * UNIT
    payout_key = httpx.get(survivors[0].url + "/healthz").json()["payoutAddress"]
    sent = [
        e
        for number in range(killed_in, chain.finalized_number() + 1)
        for e in chain.extrinsics_by(number, payout_key)
        if e.dest == wallet.ss58_address
    ]
    assert [(e.amount, e.nonce, e.success) for e in sent] == [(2 * UNIT, payouts[0][2], True)]
    alive = {r.proc.pid for r in survivors if r.proc}
    assert {owner_pid(_leases(db_url)[name]) in alive for name in LEASES} == {True}

    # Anchors go on from another replica: on chain, signed by the anchor key, the next
    # period after the last one the dead replica made (nothing skipped, nothing twice).
    after = _wait(
        "an anchor made after the dead holder's lease expired",
        lambda: [a for a in _anchors(db_url) if a.created >= expiry["anchors"]],
    )[0]
    remark = PREFIX + f"{after.root}:{after.id}".encode()
    assert chain.remarks(after.block_hash).count((anchor_key, remark)) == 1
    line = f"(root {after.root}) in block {after.block_number}"  # its log line
    made = [r for r in replicas if line in r.log_path.read_text()]
    assert len(made) == 1 and made[0] is not victim, [r.log_path for r in made]
    periods = [(a.start, a.end) for a in _anchors(db_url)]
    assert all(b[0] == a[1] for a, b in pairwise(periods)), periods
    print(
        f"\nkilled the holder of both chain leases (found in {searched:.1f} s); the payout "
        f"was sent {payouts[0][1].timestamp() - expiry['payout-sender']:.1f} s after its "
        f"lease expired, the next anchor made {after.created - expiry['anchors']:.1f} s after "
        f"its lease expired; {len(periods)} anchors in all"
    )


def _leases(db_url: str) -> dict[str, str]:
    """Each lease's (last) owner."""
    with psycopg.connect(db_url) as conn:
        return dict(conn.execute("SELECT name, owner FROM worker_leases").fetchall())


class Anchored(NamedTuple):
    id: int
    root: str
    block_hash: str
    block_number: int
    created: float  # epoch seconds
    start: datetime
    end: datetime


def _anchors(db_url: str) -> list[Anchored]:
    """Anchors on chain, oldest first."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT id, root, block_hash, block_number, created_at, period_start, period_end"
            " FROM anchors WHERE status = 'anchored' ORDER BY id"
        ).fetchall()
    return [Anchored(r[0], r[1], r[2], r[3], r[4].timestamp(), r[5], r[6]) for r in rows]


def _freeze_and_kill_the_holder(
    replicas: list[BackendProcess], db_url: str
) -> tuple[BackendProcess, dict[str, float]]:
    """Kill the replica that holds both chain leases at once: each time one replica
    appears to, it is stopped (SIGSTOP) and the leases read again; still its and not
    expired, it is killed (SIGKILL), else let go on. (The dead replica, when each of its
    leases expires.)"""
    pids = {r.proc.pid: r for r in replicas if r.proc}

    def holder(conn: psycopg.Connection) -> tuple[int, dict[str, float]] | None:
        rows = conn.execute(
            "SELECT name, owner, expires_at FROM worker_leases WHERE name = ANY(%s)",
            (list(LEASES),),
        ).fetchall()
        now = time.time()
        held = {owner_pid(owner) for _, owner, expires in rows if expires > now + 0.5}
        unexpired = sum(expires > now + 0.5 for *_, expires in rows)
        if unexpired == len(LEASES) and len(held) == 1 and (pid := held.pop()) in pids:
            return pid, {name: float(expires) for name, _, expires in rows}
        return None

    deadline = time.monotonic() + 60
    with psycopg.connect(db_url, autocommit=True) as conn:
        while True:
            assert time.monotonic() < deadline, "no replica ever held both chain leases"
            seen = holder(conn)
            if seen is None:
                time.sleep(0.005)
                continue
            os.kill(seen[0], signal.SIGSTOP)
            frozen = holder(conn)
            if frozen is not None and frozen[0] == seen[0]:
                os.kill(frozen[0], signal.SIGKILL)
                pids[frozen[0]].proc.wait(timeout=10)  # type: ignore[union-attr]
                return pids[frozen[0]], frozen[1]
            os.kill(seen[0], signal.SIGCONT)
