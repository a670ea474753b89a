"""ATTACK21 (an attacker review found it; fixed since): after `kumulus backend
reset-chain-state` (a development chain restarted from its spec, or another chain), the
next anchor and the next payout are sent with nonces of the OLD chain, which the new chain
never includes: anchors and payouts stop for good, for everyone.

FakeChain ignores the nonce a transfer is sent with and accepts a remark nonce from the
future, so the existing tests cannot see it. A real node keeps a transaction whose nonce is
ahead of the account's in its pool's "future" queue: it is never finalized (the client's
wait ends in its socket timeout, a ChainError), and with its 64-block era it is dropped.
`StrictNonces` does what a node does.

- anchors (regression of a79f3a9, anchors.submit_pending/_next_nonce): the next nonce is
  max(chain's, highest given + 1) over anchors of the same genesis; a restarted dev chain
  keeps its genesis hash, so the anchor key's nonce on the new chain (0) is overtaken by the
  old chain's (3). Before a79f3a9, `remark` let the node pick the nonce and this worked.
- payouts (older, PayoutWorker._next_nonce, not limited to the pinned genesis at all): the
  same with the paid payouts of the old chain kept "as history" by the reset, for a new
  genesis too. reset-chain-state's own text promises the pending payouts are "sent on the
  new chain"."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from kumulus.backend.clock import utcnow
from kumulus.backend.db import Database
from kumulus.backend.deposits import DepositWatcher
from kumulus.backend.jobs.anchors import AnchorJob
from kumulus.backend.models import Anchor, Payout
from kumulus.backend.payouts import PayoutWorker, request_payout
from kumulus.chain.client import ChainError, Receipt
from kumulus.cli import app as cli
from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic
from tests.backend.billing_fixtures import UNIT, account, earnings
from tests.backend.fake_chain import FakeChain

DEPOSIT = "5DepositAddress"


class StrictNonces(FakeChain):
    """A node's nonce rules: an outdated nonce is refused, one from the future waits in the
    pool and is never included (the sender's wait times out)."""

    def _check(self, keypair: Any, nonce: int | None) -> None:
        used = self.nonces.get(str(keypair.ss58_address), 0)
        if nonce is not None and nonce < used:
            raise ChainError("the chain refused the transaction: outdated", retry=False)
        if nonce is not None and nonce > used:
            raise ChainError(
                f"the chain could not be reached: timed out (nonce {nonce} is in the future "
                f"queue, the account's nonce is {used})"
            )

    def transfer(self, keypair: Any, dest: str, amount: int, nonce: int | None = None) -> Receipt:
        self._check(keypair, nonce)
        return super().transfer(keypair, dest, amount, nonce)

    def remark(self, keypair: Any, data: bytes, nonce: int | None = None) -> Receipt:
        self._check(keypair, nonce)
        return super().remark(keypair, data, nonce)

    def restart(self) -> StrictNonces:
        return StrictNonces(self.genesis)


def _reset(backend: TestClient) -> None:
    settings = backend.app.state.settings  # type: ignore[attr-defined]
    env = {
        "KUMULUS_DATABASE_URL": settings.db_url,
        "KUMULUS_BACKEND_DATA_DIR": str(settings.data_dir),
    }
    done = CliRunner().invoke(cli, ["backend", "reset-chain-state"], input="y\n", env=env)
    assert done.exit_code == 0, done.output


def _pending_anchor(db: Database) -> int:
    now = utcnow()
    with db.session() as s:
        anchor = Anchor(
            period_start=now - timedelta(hours=1), period_end=now, root="ab" * 32,
            leaf_count=1, status="pending", created_at=now,
        )  # fmt: skip
        s.add(anchor)
        s.commit()
        return anchor.id


def _restarted_and_reset(backend: TestClient, first: StrictNonces) -> StrictNonces:
    """The dev chain restarts from its spec (same genesis); the operator resets."""
    db: Database = backend.app.state.db  # type: ignore[attr-defined]
    first.empty_blocks(3)
    assert DepositWatcher(db, first.client(), DEPOSIT).scan() == 0  # cursor at block 5+
    second = first.restart()
    assert DepositWatcher(db, second.client(), DEPOSIT).scan() == 0  # stopped: restarted
    _reset(backend)
    assert DepositWatcher(db, second.client(), DEPOSIT).scan() == 0  # adopts the new chain
    return second


def test_anchors_go_on_chain_after_a_dev_chain_restart_and_reset(backend: TestClient) -> None:
    db: Database = backend.app.state.db  # type: ignore[attr-defined]
    key = keypair_from_mnemonic(new_mnemonic())
    first = StrictNonces()
    for _ in range(3):
        _pending_anchor(db)
        assert AnchorJob(db, first.client(), key, 3600.0)() == 1
    assert first.nonces[key.ss58_address] == 3

    second = _restarted_and_reset(backend, first)
    anchor_id = _pending_anchor(db)
    for _ in range(3):  # every later run too
        with contextlib.suppress(ChainError):
            AnchorJob(db, second.client(), key, 3600.0)()
    with db.session() as s:
        anchor = s.get(Anchor, anchor_id)
        assert anchor is not None
        # Failed before the fix: nonce 3 (the old chain's next) on a chain where the key's is 0.
        assert anchor.status == "anchored", (anchor.status, anchor.nonce, second.remarks)


@pytest.mark.parametrize("same_genesis", [True, False])
def test_payouts_are_sent_after_a_chain_reset(backend: TestClient, same_genesis: bool) -> None:
    db: Database = backend.app.state.db  # type: ignore[attr-defined]
    key = keypair_from_mnemonic(new_mnemonic())
    first = StrictNonces()
    first.balances[key.ss58_address] = 100 * UNIT
    with db.session() as s:
        prov = account(s, "provider")
        earnings(s, prov.id, 4 * UNIT)
        s.commit()
        prov_id = prov.id
        request_payout(s, prov_id, "5Provider", UNIT, minimum=1)
    assert PayoutWorker(db, first.client(), key).run_once() == 1  # nonce 0, old chain

    if same_genesis:
        second = _restarted_and_reset(backend, first)
    else:
        first.empty_blocks(3)
        assert DepositWatcher(db, first.client(), DEPOSIT).scan() == 0
        second = StrictNonces(genesis="0x" + "22" * 32)
        assert PayoutWorker(db, second.client(), key).run_once() == 0  # another chain: stop
        _reset(backend)
    second.balances[key.ss58_address] = 100 * UNIT
    with db.session() as s:
        request_payout(s, prov_id, "5Provider", UNIT, minimum=1)
    for _ in range(3):
        PayoutWorker(db, second.client(), key).run_once()
    with db.session() as s:
        latest = s.query(Payout).order_by(Payout.id.desc()).first()
        assert latest is not None
        # Failed before the fix: sent with nonce 1 (the old chain's next) where the key's is 0; it
        # stays `submitted` for ever and every later payout waits behind it.
        assert latest.status == "paid", (latest.status, latest.nonce, latest.error)
