"""Provider payouts on chain, never paid twice and never lost.

1. `request_payout` writes the payout `pending` and debits the provider in the same database
   transaction (the money is reserved before anything is sent).
2. `PayoutWorker.run_once` gives a pending payout the payout key's next nonce and writes
   `submitted` (with the finalized block number) before sending the transfer with exactly
   that nonce; then records `paid` (extrinsic, block, fee).
3. After a crash anywhere, `reconcile` looks at each `submitted` payout: if the key's nonce on
   chain has moved past the payout's nonce, the transfer with that nonce is looked up in the
   blocks since submission (paid, or failed and refunded); otherwise it is sent again with the
   same nonce, which the chain includes at most once.
4. After a restore from a backup, nothing is sent before the payouts the chain made since
   the backup are recorded (restored_payouts.reconcile).

The payout key is used for payouts only, so its nonces are ours to assign. It is a hot
wallet holding a float, not the deposits (backend/hot_wallet.py), and what it may send is
bounded: nothing is sent on a chain other than the pinned one (chain_identity; each payout
records the genesis its nonce belongs to), nothing while the ledger check fails (breaker),
and no more than `daily_cap` planck in any 24 hours (a payout over it waits, pending)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session
from substrateinterface import Keypair

from kumulus.backend import (
    breaker,
    chain_identity,
    ledger,
    payout_wallet,
    restored_payouts,
)
from kumulus.backend import settlement_state as state
from kumulus.backend.clock import utcnow
from kumulus.backend.db import Database
from kumulus.backend.models import Payout, ProviderProfile
from kumulus.chain.client import ChainClient, ChainError
from kumulus.core.errors import ConflictError, KumulusError
from kumulus.core.jobs import check_lease

log = logging.getLogger(__name__)


class PayoutError(ConflictError):
    """A payout request that cannot be honoured; the message says why."""

    code = "payout_refused"


def request_payout(db: Session, account_id: int, address: str, amount: int, minimum: int) -> Payout:
    """Reserve `amount` of the provider's earnings for a payout to `address` (commits).

    Only deposit-funded earnings (the `provider` account) can be paid out; earnings paid
    with promotional credit stay in `provider_promo`. Requests of one provider are
    serialised by the lock of their balance, taken before it is read, so two requests at
    once can never both spend the same earnings (the ledger refuses an overdraft anyway)."""
    return _reserve(db, account_id, amount, minimum, lambda: address)


def request_payout_to_wallet(db: Session, account_id: int, amount: int, minimum: int) -> Payout:
    """`request_payout` to the provider's payout wallet, read under the balance lock that
    a wallet re-link also takes (ConflictError `no_wallet`, `wallet_cooldown`), so a
    request racing a re-link never pays the replaced wallet."""

    def address() -> str:
        profile = db.scalar(
            select(ProviderProfile)
            .where(ProviderProfile.account_id == account_id)
            .execution_options(populate_existing=True)
        )
        return payout_wallet.payout_address(profile, utcnow())

    return _reserve(db, account_id, amount, minimum, address)


def _reserve(
    db: Session, account_id: int, amount: int, minimum: int, address_of: Callable[[], str]
) -> Payout:
    if amount < minimum:
        raise PayoutError(f"the minimum payout is {minimum} planck")
    db.rollback()  # start a fresh transaction: the lock must come before the read
    locked = ledger.lock(
        db, [ledger.key_of(ledger.PROVIDER, account_id), ledger.key_of(ledger.CHAIN, None)]
    )
    try:
        address = address_of()
    except KumulusError:
        db.rollback()
        raise
    earned = locked[ledger.key_of(ledger.PROVIDER, account_id)]
    if amount > earned:
        db.rollback()
        raise PayoutError(f"only {earned} planck earned and not yet paid out")
    txn = ledger.post(
        db,
        locked,
        [
            ledger.Leg(ledger.PROVIDER, account_id, -amount, "payout"),
            ledger.Leg(ledger.CHAIN, None, amount, "payout"),
        ],
        memo=f"payout to {address}",
    )
    now = utcnow()
    payout = Payout(
        account_id=account_id,
        address=address,
        amount=amount,
        status="pending",
        txn_id=txn,
        created_at=now,
        updated_at=now,
    )
    db.add(payout)
    db.commit()
    return payout


def schedule_payouts(db: Session, minimum: int, most: int | None = None) -> int:
    """Scheduled payouts: every provider with a linked wallet out of its cool-down and at
    least `minimum` earned gets a pending payout of everything earned (at most `most`, the
    daily cap: a larger one could never be sent). Returns how many were created."""
    created = 0
    now = utcnow()
    for (account_id,) in db.execute(
        select(ProviderProfile.account_id).where(
            ProviderProfile.wallet_address.is_not(None),
            or_(
                ProviderProfile.wallet_payouts_from.is_(None),
                ProviderProfile.wallet_payouts_from <= now,
            ),
        )
    ).all():
        earned = ledger.balance(db, ledger.PROVIDER, account_id)
        if most is not None:
            earned = min(earned, most)
        if earned >= max(minimum, 1):
            try:
                request_payout_to_wallet(db, account_id, earned, minimum)
            except ConflictError as exc:  # a re-link or another payout got there first
                log.info("no scheduled payout for provider %d: %s", account_id, exc.detail)
                continue
            created += 1
    return created


def cancel_pending(db: Session, account_id: int, reason: str) -> int:
    """Fail and refund the provider's payouts not yet sent (in the caller's transaction,
    after it took the provider's balance lock); returns how many."""
    pending = list(
        db.scalars(
            select(Payout)
            .where(Payout.account_id == account_id, Payout.status == "pending")
            .order_by(Payout.id)
        )
    )
    cancelled = 0
    for payout in pending:
        # Conditional: the sender may have claimed it (submitted) since it was read, and
        # a submitted payout is on its way; refunding it too would pay twice.
        claimed = db.execute(
            update(Payout)
            .where(Payout.id == payout.id, Payout.status == "pending")
            .values(status="failed", error=reason[:500], updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            continue
        ledger.transfer(
            db,
            (ledger.CHAIN, None),
            (ledger.PROVIDER, account_id),
            int(payout.amount),
            "refund",
            memo=f"payout {payout.id} cancelled",
        )
        log.info("payout %d cancelled and refunded: %s", payout.id, reason)
        cancelled += 1
    return cancelled


def fail_payout(s: Session, payout: Payout, error: str) -> None:
    """Mark `payout` failed and give its amount back to the provider's earnings (no commit).
    Only for a payout known not to have been paid."""
    payout.status, payout.error, payout.updated_at = "failed", error[:500], utcnow()
    ledger.transfer(
        s,
        (ledger.CHAIN, None),
        (ledger.PROVIDER, payout.account_id),
        payout.amount,
        "refund",
        memo=f"payout {payout.id} failed",
    )
    log.warning("payout %d failed and was refunded: %s", payout.id, error)


# The lease of the job `payouts` (backend/jobs): older than the job, hence its own name.
LEASE = "payout-sender"


class PayoutWorker:
    """Sends payouts. Only one process may send at a time, so the payout key's nonces are
    assigned by one sender: the job `payouts` runs `run_once` under the `payout-sender`
    lease (short, renewed, fenced: core/jobs.py, backend/lease_fence.py). A sender that
    lost it commits nothing and sends nothing more (`check_lease(before_effect=True)` right
    before each transfer); the next holder reconciles what it left. Called outside a leased
    run (tests, tools), it sends unguarded: one process only."""

    def __init__(
        self,
        db: Database,
        chain: ChainClient,
        key: Keypair,
        daily_cap: int | None = None,
    ) -> None:
        self._db = db
        self._chain = chain
        self._key = key
        self.daily_cap = daily_cap  # planck per 24 h across all providers; None: no cap
        self._genesis: str | None = None

    def run_once(self, schedule_minimum: int | None = None) -> int:
        """Reconcile what was submitted, then (optionally) schedule payouts of earnings above
        `schedule_minimum`, then send pending payouts; returns how many were paid. Does
        nothing when the chain is not the pinned one."""
        self._genesis = chain_identity.verify(self._db, self._chain)
        if self._genesis is None:
            return 0
        # After a restore, the payouts sent since the backup are recorded first; a database
        # that is behind the chain is treated as restored, marked or not.
        restored_payouts.notice_unknown_nonces(
            self._db, self._chain, self._key.ss58_address, self._genesis
        )
        if not restored_payouts.reconcile(
            self._db, self._chain, self._key.ss58_address, self._genesis
        ):
            return 0
        paid = self.reconcile()
        with self._db.session() as s:
            if s.scalar(select(func.count()).where(Payout.status == "submitted")):
                return paid  # an earlier one is unsettled: later nonces would wait behind it
            if schedule_minimum is not None:
                schedule_payouts(s, schedule_minimum, self.daily_cap)
            pending = list(
                s.scalars(select(Payout).where(Payout.status == "pending").order_by(Payout.id))
            )
            if not pending:
                state.clear_condition(self._db, state.WAITING_CAP)  # nothing waits
            for payout in pending:
                if self.daily_cap is not None and int(payout.amount) > self.daily_cap:
                    # It could never fit, and would hold back every payout behind it.
                    self._fail(
                        s,
                        payout,
                        f"{payout.amount} planck is more than the daily payout cap of "
                        f"{self.daily_cap}: request at most that at a time",
                    )
                    continue
                check_lease()  # a sender that lost its lease stops here
                if not self._under_cap(s, payout):
                    break  # in order: a payout that waits is not overtaken by later ones
                if not self._submit(s, payout):
                    break  # not settled: its nonce must be used before any later one
                paid += 1
        return paid

    def _next_nonce(self, s: Session) -> int:
        """The chain's nonce for the payout key, or past every one given on this chain (one
        given but not yet seen by the chain must not be given twice). Nonces of another
        chain, or of this genesis before a reset-chain-state, do not count: the new chain
        would keep a nonce ahead of the key's waiting for ever."""
        on_chain = self._chain.nonce(self._key.ss58_address)
        return max(on_chain, restored_payouts.accounted_nonce(s, self._genesis))

    def _under_cap(self, s: Session, payout: Payout) -> bool:
        """Whether sending `payout` keeps the last 24 hours' payouts within the daily cap;
        when not, the payout waits (`waiting:cap` says so) and is sent once older ones age
        out of the window."""
        if self.daily_cap is None:
            return True
        since = utcnow() - timedelta(hours=24)
        sent = sum(
            int(a)
            for a in s.scalars(
                select(Payout.amount).where(
                    Payout.status.in_(("submitted", "paid")), Payout.submitted_at >= since
                )
            )
        )
        if sent + int(payout.amount) <= self.daily_cap:
            state.clear_condition(self._db, state.WAITING_CAP)
            return True
        state.raise_condition(
            self._db,
            state.WAITING_CAP,
            f"payout {payout.id} of {payout.amount} planck waits: {sent} planck were paid out "
            f"in the last 24 hours and the daily cap is {self.daily_cap} "
            "(KUMULUS_BACKEND_PAYOUT_DAILY_CAP)",
            logging.WARNING,
        )
        return False

    def _submit(self, s: Session, payout: Payout) -> bool:
        if not breaker.payouts_allowed(self._db):
            return False
        nonce = self._next_nonce(s)
        now = utcnow()
        claimed = s.execute(
            update(Payout)
            .where(Payout.id == payout.id, Payout.status == "pending")
            .values(
                status="submitted",
                nonce=nonce,
                from_block=self._chain.finalized_number(),
                genesis_hash=self._genesis,
                submitted_at=now,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        s.commit()
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            return False  # another process took it
        s.refresh(payout)
        return self._send(s, payout)

    def _send(self, s: Session, payout: Payout) -> bool:
        assert payout.nonce is not None
        # Nothing takes a transfer back: only while this run surely holds the sender lease
        # (else it stays submitted and the holder reconciles it, same nonce).
        check_lease(before_effect=True)
        try:
            receipt = self._chain.transfer(
                self._key, payout.address, payout.amount, nonce=payout.nonce
            )
        except ChainError as exc:
            # Refused or unanswered: an earlier send of this very transfer may still be in
            # a node's pool and land later, so nothing is refunded here. It stays submitted;
            # reconcile re-sends it with the same nonce (included at most once) or finds it.
            log.warning("payout %d not settled yet (%s); retrying later", payout.id, exc)
            payout.error = str(exc)[:500]
            s.commit()
            return False
        settled = s.execute(
            update(Payout)
            .where(Payout.id == payout.id, Payout.status == "submitted")
            .values(
                status="paid",
                extrinsic_hash=receipt.extrinsic_hash,
                block_number=receipt.block_number,
                fee=receipt.fee,
                error=None,
                updated_at=utcnow(),
            )
            .execution_options(synchronize_session=False)
        )
        s.commit()
        s.refresh(payout)
        if settled.rowcount != 1:  # type: ignore[attr-defined]
            return False
        log.info("payout %d of %d paid in block %d", payout.id, payout.amount, receipt.block_number)
        return True

    def _fail(self, s: Session, payout: Payout, error: str) -> None:
        fail_payout(s, payout, error)
        s.commit()

    def reconcile(self) -> int:
        """Settle `submitted` payouts with what the chain says; returns how many were found
        paid. Nothing on a chain that is not the pinned one."""
        if self._genesis is None:
            self._genesis = chain_identity.verify(self._db, self._chain)
            if self._genesis is None:
                return 0
        paid = 0
        with self._db.session() as s:
            # Only this chain's: a nonce of another chain says nothing here (chain_identity
            # stops everything before that; this is the second lock on the door).
            submitted = list(
                s.scalars(
                    select(Payout)
                    .where(
                        Payout.status == "submitted",
                        (Payout.genesis_hash == self._genesis) | Payout.genesis_hash.is_(None),
                    )
                    .order_by(Payout.id)
                )
            )
            if not submitted:
                return 0
            on_chain = self._chain.nonce(self._key.ss58_address)
            head = self._chain.finalized_number()
            for payout in submitted:
                assert payout.nonce is not None
                if on_chain <= payout.nonce:
                    # Not included yet: the same nonce again (if the breaker allows sending).
                    if not breaker.payouts_allowed(self._db) or not self._send(s, payout):
                        break  # later nonces would wait behind this one
                    paid += 1
                    continue
                found = None
                for number in range(payout.from_block or 0, head + 1):
                    for ext in self._chain.extrinsics_by(number, self._key.ss58_address):
                        if ext.nonce == payout.nonce:
                            found = ext
                            break
                    if found:
                        break
                if found is None:
                    log.error("payout %d: nonce %d used but not found", payout.id, payout.nonce)
                    continue
                if not self._chain.same_account(found.dest or "", payout.address) or (
                    found.amount != payout.amount
                ):
                    # Our nonce paid something else: never mark this payout paid on it.
                    log.error(
                        "payout %d: nonce %d was used by another transfer (%s, %s); left "
                        "submitted for an operator",
                        payout.id, payout.nonce, found.dest, found.amount,
                    )  # fmt: skip
                    continue
                payout.extrinsic_hash, payout.block_number = (
                    found.extrinsic_hash,
                    found.block_number,
                )
                payout.updated_at = utcnow()
                if found.success:
                    payout.status = "paid"
                    paid += 1
                    s.commit()
                else:
                    self._fail(s, payout, "the transfer failed on chain")
        return paid
