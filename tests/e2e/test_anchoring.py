"""A period's usage records and reputation scores are anchored on the chain; `kumulus verify`
accepts a record against that anchor and refuses a tampered one."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from kumulus.backend import anchors, billing
from kumulus.backend.clock import utcnow
from kumulus.backend.db import Database, migrate
from kumulus.chain.client import ChainClient
from kumulus.chain.devnode import DevNode
from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic
from tests.backend.billing_fixtures import account, host, vm
from tests.e2e.chain import UNIT, fund

pytestmark = pytest.mark.slow


def _verify(doc: dict, path: Path) -> subprocess.CompletedProcess[str]:  # type: ignore[type-arg]
    path.write_text(json.dumps(doc))
    return subprocess.run(
        [sys.executable, "-m", "kumulus.cli", "verify", str(path)],
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
        s.commit()
        for minutes in (10, 20, 30):  # three usage charges
            billing.meter(s, machine, 1000, now=t0 + timedelta(minutes=minutes))
        anchor = anchors.build(s)
        assert anchor is not None and anchor.leaf_count == 4  # 3 usage + 1 reputation
        chain = ChainClient(dev_chain.url)
        assert anchors.submit_pending(s, chain, key) == 1
        s.refresh(anchor)
        assert anchor.status == "anchored" and anchor.block_hash
        doc = anchors.proof_document(s, anchor, 1, dev_chain.url)
    assert doc["record"]["type"] == "usage" and doc["record"]["charged"] > 0

    ok = _verify(doc, tmp_path / "proof.json")
    assert ok.returncode == 0, ok.stderr
    assert f"anchored in block {doc['blockNumber']}" in ok.stdout

    tampered = {**doc, "record": {**doc["record"], "charged": doc["record"]["charged"] - 1}}
    bad = _verify(tampered, tmp_path / "tampered.json")
    assert bad.returncode == 1 and "NOT VERIFIED" in bad.stderr

    # A proof that is internally consistent but whose root was never anchored is refused too.
    forged_root = "ab" * 32
    forged = {**doc, "proof": [], "root": forged_root,
              "remark": f"kumulus-anchor:v1:{forged_root}:{doc['anchorId']}"}  # fmt: skip
    assert _verify(forged, tmp_path / "forged.json").returncode == 1
