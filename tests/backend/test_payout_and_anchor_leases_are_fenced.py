"""The chain jobs' leases (`payout-sender` for `payouts`, `anchors`) are short, renewed and
fenced like every exclusive job's (SQLite and PostgreSQL): a sender whose holder stopped
renewing is replaced within about one lease ttl, and a holder that stalled while another
process took its lease over commits no payout or anchor and sends nothing to the chain."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from kumulus.backend import leases
from kumulus.backend.clock import utcnow
from kumulus.backend.db import Database, migrate
from kumulus.backend.hot_wallet import DepositSide
from kumulus.backend.jobs import BackendJobs, backend_jobs
from kumulus.backend.jobs.lease import DbLease
from kumulus.backend.models import Anchor, ChainDeposit, Payout
from kumulus.backend.payouts import request_payout
from kumulus.config import BackendSettings
from kumulus.core.jobs import Job, JobRunner, LeaseLostError, check_lease
from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic
from tests.backend.billing_fixtures import UNIT, account, earnings, host
from tests.backend.fake_chain import FakeChain

TTL = 0.6  # renewed every 0.2 s
PAYOUT_KEY = keypair_from_mnemonic(new_mnemonic())


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    migrate(database.engine)
    yield database
    database.engine.dispose()


class StallingChain(FakeChain):
    """A chain whose next `genesis_hash` or `nonce` call (`stall_at`) hangs until resumed:
    the holder is paused there (a long GC, a stopped VM) while the others go on."""

    def __init__(self) -> None:
        super().__init__()
        self.stall_at: str | None = None
        self.stalled = threading.Event()
        self.resume = threading.Event()

    def _maybe_stall(self, where: str) -> None:
        if self.stall_at == where:
            self.stall_at = None
            self.stalled.set()
            assert self.resume.wait(20)

    def genesis_hash(self) -> str:
        self._maybe_stall("genesis_hash")
        return super().genesis_hash()

    def nonce(self, address: str) -> int:
        self._maybe_stall("nonce")
        return super().nonce(address)


class Partitioned(DbLease):
    """A holder's lease store it cannot reach while `away` is set: its renewals fail."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.away = threading.Event()

    def renew(self, name: str, owner: str, token: int, ttl: float) -> bool:
        if self.away.is_set():
            raise ConnectionError("database unreachable")
        return super().renew(name, owner, token, ttl)


class Timed(DbLease):
    """A lease store that notes when it first granted a holding: how long the takeover took,
    apart from how long the job then ran (on a loaded machine, seconds)."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.granted_at: float | None = None

    def acquire(self, name: str, owner: str, ttl: float) -> int | None:
        token = super().acquire(name, owner, ttl)
        if token is not None and self.granted_at is None:
            self.granted_at = time.monotonic()
        return token


def _jobs(db: Database, tmp_path: Path, chain: FakeChain, lease: DbLease) -> BackendJobs:
    settings = BackendSettings(
        data_dir=tmp_path, job_lease_ttl=TTL, anchor_interval=0.01,
    )  # fmt: skip
    key = keypair_from_mnemonic(new_mnemonic())
    return backend_jobs(
        db, settings, key, chain.client(), PAYOUT_KEY, key, lease=lease,
        deposit=DepositSide("5DepositAddress", None),
    )  # fmt: skip


def _pending_payout(db: Database, chain: FakeChain) -> None:
    """A provider's pending payout, paid for by a credited deposit (the ledger check holds)."""
    n = chain.pay("5Dev", "5Deposit", 10 * UNIT)
    chain.balances[PAYOUT_KEY.ss58_address] = 100 * UNIT
    with db.session() as s:
        s.add(
            ChainDeposit(
                block_hash=chain.block_hash(n), event_index=1, block_number=n, sender="5Dev",
                amount=10 * UNIT, account_id=1, txn_id=f"t{n}", seen_at=utcnow(),
                genesis_hash=chain.genesis,
            )
        )  # fmt: skip
        prov = account(s, "provider")
        host(s, prov)  # a reputation record: something to anchor
        earnings(s, prov.id, 5 * UNIT)
        s.commit()
        request_payout(s, prov.id, "5Provider", 2 * UNIT, minimum=1)


def _payouts(db: Database) -> list[str]:
    with db.session() as s:
        return list(s.scalars(select(Payout.status)))


def _anchors(db: Database) -> list[str]:
    with db.session() as s:
        return list(s.scalars(select(Anchor.status)))


@pytest.mark.parametrize(
    ("job", "lease", "stall_at", "done"),
    [
        ("payouts", "payout-sender", "nonce", lambda db: _payouts(db) == ["paid"]),
        ("anchors", "anchors", "genesis_hash", lambda db: _anchors(db) == ["anchored"]),
    ],
)
def test_a_stalled_holder_is_replaced_and_then_commits_and_sends_nothing(
    db: Database,
    tmp_path: Path,
    job: str,
    lease: str,
    stall_at: str,
    done: Callable[[Database], bool],
) -> None:
    chain = StallingChain()
    _pending_payout(db, chain)
    partitioned = Partitioned(db)
    old = _jobs(db, tmp_path, chain, partitioned)
    failures: list[BaseException] = []

    def old_run() -> None:
        try:
            old.runner.run_now(job)
        except BaseException as exc:
            failures.append(exc)

    chain.stall_at = stall_at
    holder = threading.Thread(target=old_run)
    holder.start()
    assert chain.stalled.wait(10)
    partitioned.away.set()  # paused: its lease is no longer renewed
    stopped = time.monotonic()

    # Another replica asks for the job every 20 ms (only this job: its other jobs wait).
    timed = Timed(db)
    new = _jobs(db, tmp_path, chain, timed)
    while not new.runner.run_now(job).ran:
        time.sleep(0.02)
    assert done(db)
    assert timed.granted_at is not None
    taken_after = timed.granted_at - stopped
    # The last renewal came at most a third of the ttl before the pause.
    assert TTL * 0.5 <= taken_after <= TTL + 1.0, taken_after
    assert new.runner.stats()[job].skipped >= 5
    sent = (list(chain.sent), list(chain.remarks))

    partitioned.away.clear()
    chain.resume.set()  # the old holder wakes up and carries on where it was
    holder.join(10)
    assert not holder.is_alive()
    assert len(failures) == 1 and isinstance(failures[0], LeaseLostError), failures
    assert (list(chain.sent), list(chain.remarks)) == sent  # nothing more went to the chain
    assert _payouts(db) == (["paid"] if job == "payouts" else ["pending"])
    assert _anchors(db) == (["anchored"] if job == "anchors" else [])  # and no second one
    assert old.runner.stats()[job].leases_lost == 1
    with db.session() as s:
        assert leases.acquire(s, lease, "someone-else", 60) is not None  # released by both


def test_an_unconfirmed_holding_sends_nothing_even_before_it_is_taken(db: Database) -> None:
    """A holder whose renewals fail cannot know whether another process took its lease
    once it may have lapsed: it stops before an effect no commit could fence (a chain
    extrinsic), though between database steps it may go on (its commits are fenced)."""
    partitioned = Partitioned(db)
    seen: list[str] = []

    def holder() -> None:
        check_lease(before_effect=True)
        seen.append("sent while confirmed")
        partitioned.away.set()
        time.sleep(TTL * 0.8)  # over two thirds of its ttl without a confirmation
        check_lease()
        seen.append("a database step")
        check_lease(before_effect=True)
        seen.append("sent unconfirmed")

    runner = JobRunner([Job("work", 60, 30, holder, lease=partitioned, lease_ttl=TTL)])
    with pytest.raises(LeaseLostError, match="not confirmed"):
        runner.run_now("work")
    assert seen == ["sent while confirmed", "a database step"]
