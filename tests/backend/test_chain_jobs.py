"""Chain jobs (deposits, payouts, payout-schedule, anchors): only with settlement on; a
chain that is away fails that job's run only; scheduled payouts come once per
`payout_interval` across processes; one process anchors at a time."""

from __future__ import annotations

import logging
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient

from kumulus.backend import leases
from kumulus.backend.hot_wallet import DepositSide
from kumulus.backend.jobs import BackendJobs, backend_jobs
from kumulus.backend.models import Anchor, Payout, ProviderProfile
from kumulus.chain.client import ChainClient, ChainError, Receipt
from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic
from tests.backend.billing_fixtures import UNIT, account, earnings, host


class AwayChain:
    """A chain node that does not answer."""

    url = "ws://away"

    def genesis_hash(self) -> str:
        raise ChainError("connection refused")

    def finalized_number(self) -> int:
        raise ChainError("connection refused")

    def nonce(self, address: str) -> int:
        raise ChainError("connection refused")


class RemarkChain:
    """Takes remarks (anchors); otherwise only says which chain it is."""

    url = "ws://remarks"

    def __init__(self) -> None:
        self.remarks: list[bytes] = []

    def genesis_hash(self) -> str:
        return "0x" + "33" * 32

    def finalized_number(self) -> int:
        return len(self.remarks)

    def nonce(self, address: str) -> int:
        return len(self.remarks)

    def remark(self, keypair: Any, data: bytes, nonce: int | None = None) -> Receipt:
        assert nonce == len(self.remarks)
        self.remarks.append(data)
        n = len(self.remarks)
        return Receipt(f"0x{n:064x}", f"0x{n:064x}", n, 0)


def _jobs(backend: TestClient, chain: object) -> BackendJobs:
    app = backend.app
    return backend_jobs(
        app.state.db,  # type: ignore[attr-defined]
        app.state.settings,  # type: ignore[attr-defined]
        app.state.keypair,  # type: ignore[attr-defined]
        cast(ChainClient, chain),
        keypair_from_mnemonic(new_mnemonic()),
        keypair_from_mnemonic(new_mnemonic()),
        deposit=DepositSide("5DepositAddress", None),
    )


def test_chain_jobs_are_off_without_settlement(backend: TestClient) -> None:
    assert sorted(backend.app.state.jobs.names) == [  # type: ignore[attr-defined]
        "creates", "deletes", "meter", "prune", "reputation", "starts", "stops",
    ]  # fmt: skip


def test_a_chain_that_is_away_fails_only_the_chain_jobs(
    backend: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    jobs = _jobs(backend, AwayChain())
    assert set(jobs.runner.names) >= {
        "deposits", "payouts", "payout-schedule", "anchors", "payout-float",
    }  # fmt: skip
    with caplog.at_level(logging.WARNING), pytest.raises(ChainError):
        jobs.runner.run_now("deposits")
    assert jobs.runner.run_now("meter").ran and jobs.runner.run_now("prune").ran
    stats = jobs.runner.stats()
    assert stats["deposits"].failures == 1 and "connection refused" in str(
        stats["deposits"].last_error
    )
    assert stats["meter"].failures == 0 and stats["prune"].failures == 0
    assert "job deposits failed: ChainError" in caplog.text
    assert "Traceback" not in caplog.text  # an away chain is expected: one line


def test_scheduled_payouts_come_once_per_interval_across_processes(
    backend: TestClient,
) -> None:
    db_ = backend.app.state.db  # type: ignore[attr-defined]
    with db_.session() as s:
        prov = account(s, "provider")
        s.add(ProviderProfile(account_id=prov.id, wallet_address="5Receiver"))
        earnings(s, prov.id, 3 * UNIT)
        s.commit()
        prov_id = prov.id
    first, second = _jobs(backend, AwayChain()), _jobs(backend, AwayChain())
    assert first.runner.run_now("payout-schedule").value == 1  # due: everything earned
    assert not first.runner.run_now("payout-schedule").ran
    assert not second.runner.run_now("payout-schedule").ran  # another process, same schedule
    with db_.session() as s:
        earnings(s, prov_id, 2 * UNIT)
        s.commit()
    assert second.runner.run_now("payout-schedule", ignore_lease=True).value == 1  # forced
    with db_.session() as s:
        amounts = sorted(p.amount for p in s.query(Payout))
    assert amounts == [2 * UNIT, 3 * UNIT]


def test_one_process_anchors_at_a_time(backend: TestClient) -> None:
    db_ = backend.app.state.db  # type: ignore[attr-defined]
    with db_.session() as s:
        host(s, account(s, "provider"))  # its reputation is a record to anchor
        s.commit()
    chain = RemarkChain()
    first, second = _jobs(backend, chain), _jobs(backend, chain)
    assert first.anchors is not None and second.anchors is not None
    assert first.anchors(force=True) == 1
    with db_.session() as s:  # another process runs the job now
        assert leases.acquire(s, "anchors", "other-replica", 60) is not None
    assert not second.runner.run_now("anchors").ran
    with db_.session() as s:
        leases.release(s, "anchors", "other-replica")
    # Not due again within the interval, in whichever process: the last anchor says so.
    assert second.runner.run_now("anchors").value == 0
    assert first.runner.run_now("anchors").value == 0
    with db_.session() as s:
        assert [a.status for a in s.query(Anchor)] == ["anchored"]
    assert len(chain.remarks) == 1
