"""A period's usage records and reputation scores are anchored on the chain; `kumulus verify`
accepts a record against that anchor and refuses a tampered one."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from substrateinterface import Keypair

from kumulus.backend import anchors, billing, ledger
from kumulus.backend.clock import utcnow
from kumulus.backend.db import Database, migrate
from kumulus.chain.client import ChainClient
from kumulus.chain.devnode import DevNode
from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic
from tests.backend.billing_fixtures import account, host, vm
from tests.e2e.chain import UNIT, fund

pytestmark = pytest.mark.slow


def _verify(doc: dict, path: Path, *extra: str) -> subprocess.CompletedProcess[str]:  # type: ignore[type-arg]
    path.write_text(json.dumps(doc))
    return subprocess.run(
        [sys.executable, "-m", "kumulus.cli", "verify", str(path), *extra],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_anchored_records_verify_and_tampered_ones_do_not(
    dev_chain: DevNode, tmp_path: Path
) -> None:
    db = Database(f"sqlite:///{tmp_path / 'anchors.db'}")
    migrate(db.engine)
    key = keypair_from_mnemonic(new_mnemonic())
    fund(dev_chain, key.ss58_address, UNIT)
    t0 = utcnow() - timedelta(hours=1)
    with db.session() as s:
        prov, dev = account(s, "provider"), account(s, "developer")
        machine = vm(s, dev, host(s, prov), t0)
        ledger.transfer(s, (ledger.CHAIN, None), (ledger.DEVELOPER, dev.id), UNIT, "deposit")
        s.commit()
        terms = billing.Terms(fee_bps=1000, window=600, post_every=60)
        for minutes in (10, 20, 30):  # three usage postings
            billing.settle(s, machine, terms, now=t0 + timedelta(minutes=minutes))
            s.commit()
        # Entries settle for a few seconds before they are digested (commit races).
        assert anchors.build(s, now=utcnow()) is not None
        s.rollback()
        s.query(anchors.Anchor).delete()
        s.commit()
        anchor = anchors.build(s, now=utcnow() + anchors.SETTLE + timedelta(seconds=1))
        assert anchor is not None and anchor.leaf_count == 4  # 3 usage + 1 reputation
        chain = ChainClient(dev_chain.url)
        assert anchors.submit_pending(s, chain, key) == 1
        s.refresh(anchor)
        assert anchor.status == "anchored" and anchor.block_hash
        doc = anchors.proof_document(s, anchor, 1, dev_chain.url, key.ss58_address)
    assert doc["record"]["type"] == "usage" and doc["record"]["charged"] > 0

    trusted = ("--chain", dev_chain.url, "--signer", key.ss58_address)
    ok = _verify(doc, tmp_path / "proof.json", *trusted)
    assert ok.returncode == 0, ok.stderr
    assert f"anchored in block {doc['blockNumber']}" in ok.stdout and "warning" not in ok.stderr
    assert "warning: trusting the document" in _verify(doc, tmp_path / "p2.json").stderr

    # Remarks are open to anyone: the same anchor text posted by someone else is refused.
    bob = Keypair.create_from_uri("//Bob", ss58_format=42)
    copy = ChainClient(dev_chain.url).remark(bob, doc["remark"].encode())
    impostor = {**doc, "blockHash": copy.block_hash, "blockNumber": copy.block_number}
    refused = _verify(impostor, tmp_path / "impostor.json", *trusted)
    assert refused.returncode == 7 and "by the platform" in refused.stderr
    # A block number that does not match the hash is refused too.
    moved = {**doc, "blockNumber": doc["blockNumber"] + 1}
    assert _verify(moved, tmp_path / "moved.json", *trusted).returncode == 7

    tampered = {**doc, "record": {**doc["record"], "charged": doc["record"]["charged"] - 1}}
    bad = _verify(tampered, tmp_path / "tampered.json", *trusted)
    assert bad.returncode == 7 and "NOT VERIFIED" in bad.stderr

    # A proof that is internally consistent but whose root was never anchored is refused too.
    forged_root = "ab" * 32
    forged = {**doc, "proof": [], "root": forged_root,
              "remark": f"kumulus-anchor:v1:{forged_root}:{doc['anchorId']}"}  # fmt: skip
    assert _verify(forged, tmp_path / "forged.json", *trusted).returncode == 7
