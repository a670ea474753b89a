"""The double-entry ledger: accounts, balanced postings, running balances.

Two money classes never mix:

- **deposit-funded** ("cash"): `developer` (what a developer deposited and has not spent or
  held), `hold` (prepaid for one VM), `provider` (earnings a provider can withdraw),
  `platform` (fees), `chain` (the outside world: deposits in, payouts out; negative).
- **promotional**: `promo` (a developer's sign-up credit), `hold_promo`, `provider_promo`
  (earnings paid with promotional credit: never withdrawable as such; the platform may
  buy them back with its own fees, backend/promo_payouts.py), `platform_promo` (the
  issuer: negative by what was granted; it also takes the fee on promotional spending).

Every transaction sums to zero within each class, so promotional credit can never become
withdrawable earnings, and the deposit-funded accounts together always hold exactly what
came in through the chain minus what went out. No account a person owns (and not the
platform's fees) may go below zero: a posting that would overdraw one is refused whole.

Concurrency: a transaction locks every balance it touches once, up front, in one sorted
order (`lock`), then reads, decides and writes (`post`). PostgreSQL takes row locks
(SELECT ... FOR UPDATE) when every account of people and of the platform among them has
a row, and takes none otherwise (one statement). The accounts with no row (once in an
account's life) are then created first, and every row locked after: locking the rows
there were and then one another transaction created meanwhile took a lock out of order,
holding rows sorted after it, and deadlocked with a transaction taking them in order (found
by an attacker review, attack24). SQLite takes its single write lock with the first statement (an
INSERT of the missing balance rows), after which nobody else can write until commit. A
transaction that needs more accounts later must not lock again: it locks all of them first.

A VM's own accounts (`PER_VM`: its holds) are not created by `lock`: one that does not
exist yet is locked as *absent* (`Locks.absent`), holding 0, and its row is inserted by
the write that first changes it. Creating two rows per VM at every placement, locking them
and updating one of them was a third of a placement's database time; most VMs never hold
promotional credit, and their `hold_promo` row would only ever hold 0. An absent account
has no row to lock, so its creation is the check: the INSERT fails (nothing is written,
LedgerError) if another transaction created the row meanwhile, and waits for one that is
creating it. No account a person owns can give from an absent (zero) balance, so until its
row exists nobody can have decided anything on it but that it holds 0. In practice nothing
races there: everything that posts to a VM's holds also locks its developer's balance
(`billing.hold_keys`), which does exist. That is also why `lock` looks again for the VM
accounts it did not find, once it holds the rest: PostgreSQL reads a statement's rows as
of its start, so a row created by the transaction the lock waited for was not among them.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, cast

import orjson
from sqlalchemy import ARRAY, String, Table, bindparam, insert, select, text, update
from sqlalchemy.orm import Session

from kumulus.backend.clock import aware, utcnow
from kumulus.backend.db import driver_cursor, upsert_insert
from kumulus.backend.models import Balance, LedgerEntry, Planck

DEVELOPER, HOLD, PROVIDER, PLATFORM, CHAIN = "developer", "hold", "provider", "platform", "chain"
PROMO, HOLD_PROMO, PROVIDER_PROMO, PLATFORM_PROMO = (
    "promo",
    "hold_promo",
    "provider_promo",
    "platform_promo",
)
CASH_ACCOUNTS = frozenset({DEVELOPER, HOLD, PROVIDER, PLATFORM, CHAIN})
PROMO_ACCOUNTS = frozenset({PROMO, HOLD_PROMO, PROVIDER_PROMO, PLATFORM_PROMO})
# Accounts that hold someone's money: never below zero.
NEVER_NEGATIVE = frozenset({DEVELOPER, HOLD, PROVIDER, PLATFORM, PROMO, HOLD_PROMO, PROVIDER_PROMO})
# Accounts keyed by a VM id rather than a Kumulus account id.
PER_VM = frozenset({HOLD, HOLD_PROMO})

Key = tuple[str, str]  # (account type, account key)

# Core statements built once (their compiled form is cached): postings write many rows.
_BALANCES = cast(Table, Balance.__table__)
_SET_BALANCE = (
    update(_BALANCES)
    .where(_BALANCES.c.account_type == bindparam("t"), _BALANCES.c.account_key == bindparam("k"))
    .values(amount=bindparam("a"))
)
# The amount as exact decimal text (`planck_text`): NUMERIC on PostgreSQL, stored as the
# text it is on SQLite (as the Planck column stores it). A text statement, so that the
# row count tells the INSERTs that met a row (SQLAlchemy's INSERT construct reports -1).
_NEW_BALANCE = {
    "postgresql": text(
        "INSERT INTO balances (account_type, account_key, amount) "
        "VALUES (:t, :k, CAST(:a AS numeric)) ON CONFLICT DO NOTHING"
    ),
    "sqlite": text(
        "INSERT INTO balances (account_type, account_key, amount) VALUES (:t, :k, :a) "
        "ON CONFLICT DO NOTHING"
    ),
}
_TOUCH_BALANCE = text(
    "UPDATE balances SET amount = amount WHERE account_type = :t AND account_key = :k"
)
_INSERT_ENTRIES = insert(cast(Table, LedgerEntry.__table__))
# PostgreSQL: a chunk's keys and rows go as one JSON parameter (json_to_recordset), so
# each statement is short, parsed and planned once, and joined by index rather than a long
# OR of tuples or one statement per row; JSON is also far cheaper for psycopg to send than
# arrays of strings. Amounts travel as decimal text and are read as NUMERIC: exact. The
# statements of `lock` and `flush_batch` run on the driver's cursor (db.driver_cursor):
# every placement batch runs them.
_PG_INSERT_KEYS = (
    "INSERT INTO balances (account_type, account_key, amount) SELECT t, k, 0 "
    "FROM json_to_recordset(CAST(%(w)s AS json)) AS w(t varchar, k varchar) "
    "ON CONFLICT DO NOTHING"
)
_PG_LOCK = (
    "SELECT b.account_type, b.account_key, b.amount FROM balances AS b "
    "JOIN json_to_recordset(CAST(%(w)s AS json)) AS w(t varchar, k varchar) "
    "ON b.account_type = w.t AND b.account_key = w.k "
    "ORDER BY b.account_type, b.account_key FOR UPDATE OF b"
)
# The same, locking nothing (no row) unless all %(n)s accounts of %(a)s have a row: a
# one-time filter, evaluated before any row is locked.
_PG_LOCK_IF_EVERY = (
    "SELECT b.account_type, b.account_key, b.amount FROM balances AS b "
    "JOIN json_to_recordset(CAST(%(w)s AS json)) AS w(t varchar, k varchar) "
    "ON b.account_type = w.t AND b.account_key = w.k "
    "WHERE (SELECT count(*) FROM balances AS e "
    "JOIN json_to_recordset(CAST(%(a)s AS json)) AS a(t varchar, k varchar) "
    "ON e.account_type = a.t AND e.account_key = a.k) = %(n)s "
    "ORDER BY b.account_type, b.account_key FOR UPDATE OF b"
)
# The keys' range (in the database's collation) makes it an index range scan of the
# primary key; `= ANY` alone would scan the table.
_PG_LOCK_EXISTING = text(
    "SELECT account_type, account_key, amount FROM balances "
    "WHERE account_type = ANY(:types) "
    "AND account_key BETWEEN (SELECT min(k) FROM unnest(:keys) AS k) "
    "AND (SELECT max(k) FROM unnest(:keys) AS k) "
    "AND account_key = ANY(:keys) ORDER BY account_type, account_key FOR UPDATE"
).bindparams(bindparam("types", type_=ARRAY(String)), bindparam("keys", type_=ARRAY(String)))
_PG_SET_BALANCES = (
    "UPDATE balances AS b SET amount = w.a "
    "FROM json_to_recordset(CAST(%(w)s AS json)) AS w(t varchar, k varchar, a numeric) "
    "WHERE b.account_type = w.t AND b.account_key = w.k"
)
_PG_NEW_BALANCES = (
    "INSERT INTO balances (account_type, account_key, amount) "
    "SELECT t, k, a FROM json_to_recordset(CAST(%(w)s AS json)) "
    "AS w(t varchar, k varchar, a numeric) ON CONFLICT DO NOTHING"
)
_SQLITE_READ = text(
    "SELECT account_key, amount FROM balances WHERE account_type = :t AND account_key IN :keys"
).bindparams(bindparam("keys", expanding=True))
_PG_COPY_ENTRIES = (
    "COPY ledger_entries (txn_id, account_type, account_id, amount, kind, vm_id, memo, created_at) "
    "FROM STDIN"
)


def planck_text(amount: int) -> str:
    """An amount as exact decimal text for a JSON parameter, checked as a Planck column
    checks what it stores (an int, within NUMERIC(39, 0))."""
    return str(Planck.checked(amount))


def pg_json(rows: list[dict[str, Any]]) -> str:
    """Rows as the JSON a json_to_recordset parameter takes: datetimes in ISO 8601 with
    their offset (a naive one is UTC, as everywhere in the backend), which timestamptz
    reads exactly, not in the session's time zone. Anything else unknown is an error.

    Encoded by orjson (a placement batch sends several such documents: the standard
    encoder was a tenth of the placer's time); integers past 64 bits, which orjson does
    not take, go through the standard encoder, exact."""
    try:
        return orjson.dumps(rows, option=orjson.OPT_NAIVE_UTC).decode()
    except orjson.JSONEncodeError:
        pass
    seen: dict[datetime, str] = {}  # a chunk's rows share a few times: format each once

    def encode(value: object) -> str:
        if isinstance(value, datetime):
            text = seen.get(value)
            if text is None:
                text = seen[value] = aware(value).isoformat()
            return text
        raise TypeError(f"{type(value).__name__} has no JSON form here")

    return json.dumps(rows, default=encode, separators=(",", ":"))


class LedgerError(Exception):
    """A posting that breaks a ledger rule (a bug or a refused overdraft): nothing of it
    was written."""


class NotLockedError(LedgerError):
    """The transaction did not lock this account (see `lock`): nothing was written. For a
    caller that locked only some accounts on purpose (`lock_existing`), the sign that this
    work needs the others."""

    def __init__(self, key: Key) -> None:
        super().__init__(f"account {key[0]}:{key[1]} was not locked for this transaction")
        self.key = key


class Locks(dict[Key, int]):
    """The balances a transaction locked (`lock`, `lock_existing`), by account. Reading an
    account it did not lock raises NotLockedError: money is never decided on an unlocked
    balance. `absent`: the per-VM accounts among them that have no row yet (holding 0);
    the write that first changes one inserts its row (see the module docstring)."""

    def __init__(self, balances: Iterable[tuple[Key, int]] = (), absent: Iterable[Key] = ()):
        super().__init__(balances)
        self.absent: set[Key] = set(absent)

    def __missing__(self, key: Key) -> int:
        raise NotLockedError(key)


class OverdraftError(LedgerError):
    """The posting would take an account below zero."""

    def __init__(self, key: Key, balance: int, change: int) -> None:
        super().__init__(f"{key[0]}:{key[1]} holds {balance}, cannot give {-change}")
        self.key, self.balance, self.change = key, balance, change


@dataclass(frozen=True)
class Leg:
    """One line of a transaction. `account_id` is the Kumulus account the money belongs to
    (for a hold: the developer whose hold it is); holds are keyed by the transaction's VM."""

    account_type: str
    account_id: int | None
    amount: int
    kind: str


@dataclass
class PostingBatch:
    """Postings accepted by `post` but not yet written: their ledger entries, and the
    balance each touched account will hold. Everything in it was checked under the caller's
    locks; `flush_batch` writes it in that same database transaction, before the commit.
    Lets a caller that posts for many VMs at once (the meter job's chunks) write with a
    constant number of statements instead of two per posting."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    balances: dict[Key, int] = field(default_factory=dict)
    created: set[Key] = field(default_factory=set)  # of `balances`: rows to insert
    _txn_ids: list[str] = field(default_factory=list)

    def new_txn_id(self) -> str:
        """A transaction id as `post` makes one (64 random bits, in hex), drawn from the
        operating system 64 at a time: one call per posting was a tenth of a placement's
        posting time."""
        if not self._txn_ids:
            drawn = secrets.token_hex(8 * 64)
            self._txn_ids = [drawn[i : i + 16] for i in range(0, len(drawn), 16)]
        return self._txn_ids.pop()

    def open_account(self, locked: dict[Key, int], key: Key) -> None:
        """Have `flush_batch` write `key`'s balance even if no posting changes it: an
        absent per-VM account is then created, holding what it holds (0)."""
        if key not in self.balances:
            self.balances[key] = locked[key]
            _take_absent(locked, key, self.created)


def key_of(account_type: str, account_id: int | None, vm_id: str | None = None) -> Key:
    if account_type in PER_VM:
        if not vm_id:
            raise LedgerError(f"a {account_type} account needs a VM")
        return (account_type, vm_id)
    return (account_type, "" if account_id is None else str(account_id))


def lock(db: Session, keys: Iterable[Key]) -> Locks:
    """Lock the balances of `keys` for the rest of the caller's transaction and return
    them. Absent accounts hold 0: a person's or the platform's is created now; a VM's own
    (PER_VM) is not, and is in `Locks.absent` until a write creates it (see the module
    docstring). Call once per transaction, with every key it will post to."""
    wanted = sorted(set(keys))
    if not wanted:
        return Locks()
    accounts = [k for k in wanted if k[0] not in PER_VM]
    found: dict[Key, int] = {}
    if db.get_bind().dialect.name == "postgresql":
        # Locks every row there is in one sorted pass if the people's and the platform's
        # accounts all have one (creating them up front cost every lock an INSERT probing
        # each key). Otherwise it locks nothing: creating the missing ones then and
        # locking a row another transaction created meanwhile would take that lock out of
        # the sorted order, holding rows sorted after it (a deadlock with a transaction
        # that locks both in order: attack24). So then: create them, then lock everything.
        every = {"w": pg_json([{"t": t, "k": k} for t, k in wanted])}
        with driver_cursor(db) as cursor:
            if accounts:
                a = pg_json([{"t": t, "k": k} for t, k in accounts])
                cursor.execute(_PG_LOCK_IF_EVERY, {**every, "a": a, "n": len(accounts)})
                rows = cursor.fetchall()
                if not rows:  # some account has no row: nothing was locked
                    cursor.execute(_PG_INSERT_KEYS, {"w": a})
                    cursor.execute(_PG_LOCK, every)
                    rows = cursor.fetchall()
            else:
                cursor.execute(_PG_LOCK, every)
                rows = cursor.fetchall()
        for account_type, account_key, amount in rows:
            found[(account_type, account_key)] = int(amount)
        # That statement read the rows as of its start: a VM's account created by a
        # transaction it then waited for (holding this developer's balance) is not among
        # them. Now that every other lock is held, nobody is creating one: read the
        # missing ones again, in a new statement, which sees what was committed. (When
        # nothing was found, nothing was waited for.)
        missing = [{"t": t, "k": k} for t, k in wanted if (t, k) not in found]
        if missing and len(missing) < len(wanted):
            with driver_cursor(db) as cursor:
                cursor.execute(_PG_LOCK, {"w": pg_json(missing)})
                for account_type, account_key, amount in cursor.fetchall():
                    found[(account_type, account_key)] = int(amount)
    else:
        # SQLite: creates missing rows; its being a write also takes the database's write
        # lock now, before any balance is read (as does setting a balance to itself).
        if accounts:
            db.execute(
                upsert_insert(db, _BALANCES).on_conflict_do_nothing(),
                [{"account_type": t, "account_key": k, "amount": 0} for t, k in accounts],
            )
        else:
            db.execute(_TOUCH_BALANCE, {"t": wanted[0][0], "k": wanted[0][1]})
        found = _sqlite_read(db, wanted)
    return Locks(((k, found.get(k, 0)) for k in wanted), absent=set(wanted) - found.keys())


def lock_existing(db: Session, account_types: Sequence[str], account_keys: Sequence[str]) -> Locks:
    """`lock` for accounts that should exist already: locks the balances of every account
    type in `account_types` for every key in `account_keys` that exist (one sorted pass,
    the order of `lock`) and creates none; the others are missing from the result, so
    that work needing them raises NotLockedError. Cheaper than `lock` (no INSERT, and on
    PostgreSQL a scan of the keys' range of the index, not of the table, which suits keys
    that are close together such as a chunk of VM ids); the caller must still lock once
    per transaction. Per-VM accounts (PER_VM) that do not exist are returned as `lock`
    returns them: holding 0, in `Locks.absent`."""
    if not account_types or not account_keys:
        return Locks()
    if db.get_bind().dialect.name == "postgresql":
        params = {"types": list(account_types), "keys": list(account_keys)}
        rows = db.connection().execute(_PG_LOCK_EXISTING, params).all()
        found = {(t, k): int(a) for t, k, a in rows}
    else:
        # SQLite: a write takes the database's write lock before any balance is read
        # (`lock` does it with its INSERT); setting a balance to itself changes nothing.
        db.execute(_TOUCH_BALANCE, {"t": account_types[0], "k": account_keys[0]})
        found = _sqlite_read(db, ((t, k) for t in account_types for k in account_keys))
    absent = [
        (t, k) for t in account_types if t in PER_VM for k in account_keys if (t, k) not in found
    ]
    return Locks([*found.items(), *((key, 0) for key in absent)], absent=absent)


def _sqlite_read(db: Session, wanted: Iterable[Key]) -> dict[Key, int]:
    """The balances of `wanted` that exist: per account type, the keys in IN lists of at
    most 500 (SQLite's parameter limit), each a lookup of the primary key."""
    by_type: dict[str, list[str]] = {}
    for account_type, account_key in wanted:
        by_type.setdefault(account_type, []).append(account_key)
    found: dict[Key, int] = {}
    conn = db.connection()
    for account_type, keys in by_type.items():
        for start in range(0, len(keys), 500):
            rows = conn.execute(
                _SQLITE_READ, {"t": account_type, "keys": keys[start : start + 500]}
            ).all()
            found.update(((account_type, k), int(a)) for k, a in rows)
    return found


def post(
    db: Session,
    locked: dict[Key, int],
    legs: Sequence[Leg],
    vm_id: str | None = None,
    memo: str = "",
    batch: PostingBatch | None = None,
) -> str:
    """Write one transaction (in the caller's database transaction) and update `locked`,
    the balances from `lock`, which must cover every leg's account. Returns the
    transaction id. Raises LedgerError (nothing written) if the legs do not sum to zero in
    each class, mix classes with unknown accounts, or would overdraw an account.

    With `batch`, the checked transaction is added to it instead of written: the caller
    must `flush_batch` it before committing (and drop it if the transaction rolls back).
    `locked` is updated either way, so later postings are checked against it."""
    if not legs:
        raise LedgerError("empty transaction")
    cash = sum(leg.amount for leg in legs if leg.account_type in CASH_ACCOUNTS)
    promo = sum(leg.amount for leg in legs if leg.account_type in PROMO_ACCOUNTS)
    unknown = [leg for leg in legs if leg.account_type not in CASH_ACCOUNTS | PROMO_ACCOUNTS]
    if unknown or cash != 0 or promo != 0:
        raise LedgerError(f"unbalanced transaction: {legs!r}")
    changes: dict[Key, int] = {}
    for leg in legs:
        key = key_of(leg.account_type, leg.account_id, vm_id)
        if key not in locked:
            raise NotLockedError(key)
        changes[key] = changes.get(key, 0) + leg.amount
    for key, change in changes.items():
        after = locked[key] + change
        # An account already below zero (rows from before this rule) may still receive.
        if key[0] in NEVER_NEGATIVE and change < 0 and after < 0:
            raise OverdraftError(key, locked[key], change)
    txn = secrets.token_hex(8) if batch is None else batch.new_txn_id()
    now = utcnow()
    entries = [
        {
            "txn_id": txn,
            "account_type": leg.account_type,
            "account_id": leg.account_id,
            "amount": leg.amount,
            "kind": leg.kind,
            "vm_id": vm_id,
            "memo": memo[:200],
            "created_at": now,
        }
        for leg in legs
        if leg.amount != 0
    ]
    if batch is not None:
        batch.entries.extend(entries)
        for key, change in changes.items():
            if change:
                locked[key] += change
                batch.balances[key] = locked[key]
                _take_absent(locked, key, batch.created)
        return txn
    # On the session's connection, in its transaction: these writes need none of the
    # session's pending changes, so they do not flush them (one flush per posting was most
    # of a metering pass); those are written at the next query or commit.
    conn = db.connection()
    if entries:
        conn.execute(_INSERT_ENTRIES, entries)
    writes: list[dict[str, Any]] = []
    created: set[Key] = set()
    for key, change in changes.items():
        if change == 0:
            continue
        locked[key] += change
        writes.append({"t": key[0], "k": key[1], "a": locked[key]})
        _take_absent(locked, key, created)
    _write_balances(partial(_rowcount, conn), *_many(db, writes, created))
    return txn


# A balance write: its statement, its parameters, how many rows it must write.
Write = tuple[Any, Any, int]


def _many(
    db: Session, writes: list[dict[str, Any]], created: set[Key]
) -> tuple[Write | None, Write | None]:
    """`writes` ({t, k, a} rows) as one executemany UPDATE of the accounts that exist and
    one executemany INSERT of those in `created`."""
    updates = [w for w in writes if (w["t"], w["k"]) not in created]
    inserts = [{**w, "a": planck_text(w["a"])} for w in writes if (w["t"], w["k"]) in created]
    new = _NEW_BALANCE[db.get_bind().dialect.name]
    return (
        (_SET_BALANCE, updates, len(updates)) if updates else None,
        (new, inserts, len(inserts)) if inserts else None,
    )


def _take_absent(locked: dict[Key, int], key: Key, created: set[Key]) -> None:
    """`key` is about to be written: if it has no row yet, its write is an INSERT."""
    if isinstance(locked, Locks) and key in locked.absent:
        locked.absent.discard(key)
        created.add(key)


def _write_balances(
    run: Callable[[Any, Any], int], updates: Write | None, inserts: Write | None
) -> None:
    """Run the balance UPDATE, then the INSERT of the accounts created (last: the only
    write here that can wait on another transaction), and check that each wrote every row.
    An UPDATE that missed a row would lose that money silently; an INSERT that met a row
    means another transaction created that account after it was read as absent. Either
    raises LedgerError, and the caller's transaction must not commit. `run` executes a
    statement with its parameters and returns its row count."""
    for write, what in ((updates, "update"), (inserts, "create")):
        if write is None:
            continue
        statement, params, expected = write
        written = run(statement, params)
        if written not in (-1, expected):
            raise LedgerError(
                f"could only {what} {written} of {expected} balance(s): an account was "
                "created or removed by another transaction meanwhile"
            )


def _rowcount(conn: Any, statement: Any, params: Any) -> int:
    return int(conn.execute(statement, params).rowcount)


def flush_batch(db: Session, batch: PostingBatch) -> None:
    """Write the batch's entries and final balances (one executemany each, which psycopg
    pipelines) in the caller's transaction, which must still hold the locks the postings
    were checked under; empties the batch. Like `post`, it does not flush the session."""
    conn = db.connection()
    if db.get_bind().dialect.name != "postgresql":
        if batch.entries:
            conn.execute(_INSERT_ENTRIES, batch.entries)
        writes = [{"t": t, "k": k, "a": a} for (t, k), a in batch.balances.items()]
        _write_balances(partial(_rowcount, conn), *_many(db, writes, batch.created))
        batch.entries, batch.balances, batch.created = [], {}, set()
        return
    if batch.entries:
        # COPY: no statement to parse per row, rows inserted in batches (about twice as
        # fast as INSERT ... SELECT from JSON for a chunk's thousands of entries).
        with driver_cursor(db) as cursor, cursor.copy(_PG_COPY_ENTRIES) as copy:
            for e in batch.entries:
                copy.write_row(
                    (
                        e["txn_id"],
                        e["account_type"],
                        e["account_id"],
                        Planck.checked(e["amount"]),
                        e["kind"],
                        e["vm_id"],
                        e["memo"],
                        aware(e["created_at"]),  # a naive one would be read in the session's zone
                    )
                )
    updates: list[dict[str, Any]] = []
    inserts: list[dict[str, Any]] = []
    for (t, k), a in batch.balances.items():
        (inserts if (t, k) in batch.created else updates).append(
            {"t": t, "k": k, "a": planck_text(a)}
        )
    with driver_cursor(db) as cursor:

        def run(statement: str, params: dict[str, Any]) -> int:
            cursor.execute(statement, params)
            return int(cursor.rowcount)

        _write_balances(
            run,
            (_PG_SET_BALANCES, {"w": pg_json(updates)}, len(updates)) if updates else None,
            (_PG_NEW_BALANCES, {"w": pg_json(inserts)}, len(inserts)) if inserts else None,
        )
    batch.entries, batch.balances, batch.created = [], {}, set()


def balance(
    db: Session, account_type: str, account_id: int | None, vm_id: str | None = None
) -> int:
    """The account's balance as last committed (no lock: for display and for decisions
    that are taken again under `lock`)."""
    t, k = key_of(account_type, account_id, vm_id)
    amount = db.scalar(
        select(Balance.amount).where(Balance.account_type == t, Balance.account_key == k)
    )
    return int(amount or 0)


def transfer(
    db: Session,
    debit: tuple[str, int | None],
    credit: tuple[str, int | None],
    amount: int,
    kind: str,
    memo: str = "",
    vm_id: str | None = None,
) -> str:
    """A two-leg transaction that locks its own two accounts: for callers that post just
    this one transaction in their database transaction (deposits, payouts, grants)."""
    locked = lock(db, [key_of(*debit, vm_id), key_of(*credit, vm_id)])
    return post(
        db,
        locked,
        [Leg(debit[0], debit[1], -amount, kind), Leg(credit[0], credit[1], amount, kind)],
        vm_id=vm_id,
        memo=memo,
    )
