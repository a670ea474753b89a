"""An anchor's remark is sent with a nonce of the anchor key fixed before the first send, so
the chain holds one copy however many holders of the anchors job send it: one that died
after sending and before recording it, or one that stalled inside the call while another
took its lease over and sent it."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from kumulus.backend import anchors
from kumulus.backend.clock import utcnow
from kumulus.backend.db import Database, migrate
from kumulus.backend.models import Anchor
from kumulus.chain.client import ChainClient, ChainError, Receipt
from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic
from tests.backend.fake_chain import FakeChain

GENESIS = "0x" + "11" * 32


def _pending(db: Database) -> int:
    migrate(db.engine)
    now = utcnow()
    with db.session() as s:
        anchor = Anchor(
            period_start=now - timedelta(hours=1), period_end=now, root="ab" * 32,
            leaf_count=3, status="pending", created_at=now,
        )  # fmt: skip
        s.add(anchor)
        s.commit()
        return anchor.id


def _anchor(db: Database, anchor_id: int) -> Anchor:
    with db.session() as s:
        row = s.get(Anchor, anchor_id)
        assert row is not None
        s.expunge(row)
        return row


class DiesAfterSending(FakeChain):
    def remark(self, keypair: Any, data: bytes, nonce: int | None = None) -> Receipt:
        super().remark(keypair, data, nonce)
        raise SystemExit("killed after sending")


def test_a_holder_that_died_after_sending_is_not_sent_again(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'k.db'}")
    anchor_id = _pending(db)
    key = keypair_from_mnemonic(new_mnemonic())
    chain = DiesAfterSending()
    chain.empty_blocks(5)
    with db.session() as s, pytest.raises(SystemExit):
        anchors.submit_pending(s, chain.client(), key, GENESIS)
    assert len(chain.remarks) == 1 and _anchor(db, anchor_id).status == "pending"

    with db.session() as s:  # the next holder
        assert anchors.submit_pending(s, FakeChain.client(chain), key, GENESIS) == 1
    assert len(chain.remarks) == 1  # found on chain, not sent again
    anchored = _anchor(db, anchor_id)
    [(number, [(_, sent)])] = list(chain.signed.items())
    assert (anchored.status, anchored.block_number, anchored.extrinsic_hash) == (
        "anchored", number, sent.extrinsic_hash,
    )  # fmt: skip


class StallsInsideTheCall(FakeChain):
    """The first remark waits (a paused process) before it reaches the chain."""

    def __init__(self) -> None:
        super().__init__()
        self.stalled = threading.Event()
        self.resume = threading.Event()
        self.first = True

    def remark(self, keypair: Any, data: bytes, nonce: int | None = None) -> Receipt:
        if self.first:
            self.first = False
            self.stalled.set()
            assert self.resume.wait(20)
        return super().remark(keypair, data, nonce)


def test_a_stalled_sender_and_its_successor_put_one_copy_on_chain(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'k.db'}")
    anchor_id = _pending(db)
    key = keypair_from_mnemonic(new_mnemonic())
    chain = StallsInsideTheCall()
    client: ChainClient = chain.client()
    outcome: list[BaseException | int] = []

    def stalled_holder() -> None:
        with db.session() as s:
            try:
                outcome.append(anchors.submit_pending(s, client, key, GENESIS))
            except BaseException as exc:
                outcome.append(exc)

    first = threading.Thread(target=stalled_holder)
    first.start()
    assert chain.stalled.wait(20)  # its nonce is committed; its remark is not on chain yet
    with db.session() as s:  # the holder that took the lease over
        assert anchors.submit_pending(s, client, key, GENESIS) == 1
    chain.resume.set()
    first.join(20)
    assert len(chain.remarks) == 1
    [refused] = outcome
    assert isinstance(refused, ChainError)  # the old holder's copy: its nonce is used
    assert _anchor(db, anchor_id).status == "anchored"
