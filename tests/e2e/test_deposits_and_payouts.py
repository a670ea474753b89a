"""Money on a real chain (chopsticks, fresh per session): a deposit from a linked wallet is
credited once, also after a backend restart and a re-scan; one from an unlinked wallet is
recorded, not credited; deposits land on their own address and the payout key is topped up
to its float from it; a payout arrives in the provider's wallet (System.Account); a backend
that dies after sending a payout but before recording it does not pay twice."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session
from substrateinterface import Keypair

from kumulus.backend import ledger
from kumulus.backend.clock import utcnow
from kumulus.backend.db import Database, migrate
from kumulus.backend.models import ChainDeposit, Payout, ProviderProfile
from kumulus.backend.payouts import PayoutWorker, request_payout, schedule_payouts
from kumulus.chain.client import ChainClient, Receipt
from kumulus.chain.devnode import DevNode
from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic, write_secret_file
from tests.backend.billing_fixtures import account, earnings
from tests.e2e.agent_process import BackendProcess
from tests.e2e.chain import UNIT, fund
from tests.e2e.test_marketplace import _account

pytestmark = pytest.mark.slow


def _wait(predicate, timeout: float = 60):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError("timed out")


def _link(client: httpx.Client, wallet: Keypair, prefix: str) -> None:
    challenge = client.post(f"{prefix}/wallet/challenge").json()
    signature = "0x" + bytes(wallet.sign(challenge["message"].encode())).hex()
    resp = client.post(
        f"{prefix}/wallet/link",
        json={
            "challengeId": challenge["challengeId"],
            "address": wallet.ss58_address,
            "signature": signature,
        },
    )
    assert resp.status_code in (200, 201), resp.text


def _balance(client: httpx.Client) -> int:
    return int(client.get("/v1/billing").json()["balancePlanck"])


def test_deposits_are_credited_exactly_once_and_payouts_arrive(
    dev_chain: DevNode, tmp_path: Path
) -> None:
    data = tmp_path / "backend"
    env = {
        "KUMULUS_BACKEND_CHAIN_URL": dev_chain.url,
        "KUMULUS_BACKEND_MAINTENANCE_INTERVAL": "1",
    }
    backend = BackendProcess(data, **env).start()
    chain = ChainClient(dev_chain.url)
    anon = httpx.Client(base_url=backend.url, timeout=60)
    try:
        dev = _account(anon, "payer@example.com", "developer")
        info = dev.get("/v1/billing/deposit-info").json()
        platform = info["address"]
        payout_address = anon.get("/healthz").json()["payoutAddress"]
        assert platform != payout_address  # the key that signs payouts holds no deposits
        fund(dev_chain, platform, 10 * UNIT)  # what the payout float is topped up from

        mnemonic = new_mnemonic()
        wallet = keypair_from_mnemonic(mnemonic)
        _link(dev, wallet, "/v1")
        fund(dev_chain, wallet.ss58_address, 20 * UNIT)
        start = _balance(dev)  # the sign-up credit

        # `kumulus wallet deposit`, as a developer runs it.
        secret = tmp_path / "dev-mnemonic"
        write_secret_file(secret, mnemonic)
        home = tmp_path / "home"
        (home / "kumulus").mkdir(parents=True)
        token = dev.headers["Authorization"].split()[1]
        (home / "kumulus" / "cli.json").write_text(
            json.dumps({"backend": backend.url, "token": token})
        )
        out = subprocess.run(
            [sys.executable, "-m", "kumulus.cli", "wallet", "deposit", "--amount", "5",
             "--mnemonic-file", str(secret)],
            env={**backend.env, "XDG_CONFIG_HOME": str(home)},
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert "sent 5 UNIT" in out.stdout and mnemonic.split()[0] not in out.stdout + out.stderr
        _wait(lambda: _balance(dev) == start + 5 * UNIT)

        # From a wallet nobody linked: seen and recorded, not credited.
        stranger = Keypair.create_from_uri("//Bob", ss58_format=42)
        chain.transfer(stranger, platform, 3 * UNIT)
        db_file = data / "kumulus.db"

        def recorded() -> list[tuple[str, int, int | None]]:
            with sqlite3.connect(db_file) as conn:
                rows = conn.execute(
                    "SELECT sender, amount, account_id FROM chain_deposits ORDER BY block_number"
                ).fetchall()
            # Amounts are exact decimal text on SQLite (they can pass 64 bits).
            return [(sender, int(amount), account) for sender, amount, account in rows]

        # (Alice's funding of the platform account above is such a transfer too.)
        _wait(lambda: (stranger.ss58_address, 3 * UNIT, None) in recorded())
        seen = recorded()
        assert [r for r in seen if r[2] is not None] == [
            (wallet.ss58_address, 5 * UNIT, r[2]) for r in seen if r[2] is not None
        ]

        # Restart the backend, then make it re-scan every block: still credited once.
        backend.stop()
        backend.start()
        time.sleep(3)
        assert _balance(dev) == start + 5 * UNIT
        backend.stop()
        rescan = subprocess.run(
            [sys.executable, "-m", "kumulus.cli", "backend", "rescan-deposits",
             "--from-block", "1"],
            env=backend.env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert rescan.returncode == 0, rescan.stderr
        backend.start()

        def cursor() -> int:
            with sqlite3.connect(db_file) as conn:
                return int(conn.execute("SELECT block_number FROM chain_cursors").fetchone()[0])

        _wait(lambda: cursor() >= chain.finalized_number())
        assert _balance(dev) == start + 5 * UNIT and recorded() == seen
        with sqlite3.connect(db_file) as conn:  # the cursor knows which chain it is on
            pinned = conn.execute("SELECT genesis_hash FROM chain_cursors").fetchone()[0]
        assert pinned == chain.genesis_hash()

        # The payout key holds no deposits, only its float, topped up from the deposit key.
        _wait(lambda: chain.free_balance(payout_address) > 10 * UNIT)

        # A provider's earnings are paid to their wallet on chain.
        prov = _account(anon, "earner@example.com", "provider")
        prov_wallet = keypair_from_mnemonic(new_mnemonic())
        _link(prov, prov_wallet, "/v1/provider")
        prov_id = prov.get("/v1/me").json()["id"]
        db = Database(f"sqlite:///{db_file}")
        with db.session() as s:  # earnings, as metering would have credited them
            earnings(s, prov_id, 3 * UNIT)
            s.commit()
        db.engine.dispose()
        too_much = prov.post("/v1/provider/payouts", json={"amount": "4"})
        assert too_much.status_code == 409 and "earned" in too_much.json()["detail"]
        asked = prov.post("/v1/provider/payouts", json={"amount": "2"})
        assert asked.status_code == 202, asked.text
        paid = _wait(lambda: [p for p in prov.get("/v1/provider/payouts").json()["items"]
                              if p["status"] == "paid"])  # fmt: skip
        assert paid[0]["extrinsicHash"] and paid[0]["blockNumber"]
        assert chain.free_balance(prov_wallet.ss58_address) == 2 * UNIT
        assert _balance(prov) == 1 * UNIT
    finally:
        anon.close()
        chain.close()
        backend.stop()


def _credited_deposit(s: Session, chain: ChainClient, amount: int) -> None:
    """A deposit credited in the chain's latest block (the circuit breaker lets payouts
    through only up to credited deposits)."""
    number = chain.finalized_number()
    s.add(
        ChainDeposit(
            block_hash=chain.block_hash(number), event_index=0, block_number=number,
            sender="5Dev", amount=amount, account_id=account(s, "developer").id,
            txn_id="seeded", seen_at=utcnow(),
        )
    )  # fmt: skip
    s.commit()


class _DiesAfterSending(ChainClient):
    """The chain accepts the transfer, then the backend process dies before recording it."""

    def transfer(
        self, keypair: Keypair, dest: str, amount: int, nonce: int | None = None
    ) -> Receipt:
        super().transfer(keypair, dest, amount, nonce)
        raise SystemExit("killed after sending")


def test_a_crash_between_sending_and_recording_never_pays_twice(
    dev_chain: DevNode, tmp_path: Path
) -> None:
    db = Database(f"sqlite:///{tmp_path / 'payouts.db'}")
    migrate(db.engine)
    key = keypair_from_mnemonic(new_mnemonic())
    fund(dev_chain, key.ss58_address, 10 * UNIT)
    receiver = keypair_from_mnemonic(new_mnemonic()).ss58_address
    with db.session() as s:
        _credited_deposit(s, ChainClient(dev_chain.url), 5 * UNIT)  # what payouts come from
        provider = account(s, "provider")
        earnings(s, provider.id, 5 * UNIT)
        s.commit()
        first = request_payout(s, provider.id, receiver, 2 * UNIT, minimum=UNIT)
        second = request_payout(s, provider.id, receiver, 1 * UNIT, minimum=UNIT)
        assert (first.status, second.status) == ("pending", "pending")

    dying = PayoutWorker(db, _DiesAfterSending(dev_chain.url), key)
    with pytest.raises(SystemExit):
        dying.run_once()
    with db.session() as s:
        states = {p.id: p.status for p in s.query(Payout)}
    assert states == {first.id: "submitted", second.id: "pending"}
    assert ChainClient(dev_chain.url).free_balance(receiver) == 2 * UNIT  # it did go out

    # The sender that takes over (the job runs under the `payout-sender` lease, which the
    # dead one no longer renews) reconciles: the first is found paid, the second is sent once.
    fresh = PayoutWorker(db, ChainClient(dev_chain.url), key)
    assert fresh.run_once() == 2
    assert fresh.run_once() == 0
    with db.session() as s:
        assert {p.status for p in s.query(Payout)} == {"paid"}
        assert ledger.balance(s, ledger.PROVIDER, provider.id) == 2 * UNIT
    assert ChainClient(dev_chain.url).free_balance(receiver) == 3 * UNIT

    # Scheduled payouts: everything earned goes to the provider's linked wallet.
    with db.session() as s:
        s.add(ProviderProfile(account_id=provider.id, wallet_address=receiver))
        s.commit()
        assert schedule_payouts(s, minimum=UNIT) == 1
        assert schedule_payouts(s, minimum=UNIT) == 0  # nothing left to schedule
    assert fresh.run_once() == 1
    assert ChainClient(dev_chain.url).free_balance(receiver) == 5 * UNIT
