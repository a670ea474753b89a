"""Group commit: many threads' small write transactions run as one, committed once.

A commit costs a WAL flush (PostgreSQL) whatever it carries, so one commit per placement
capped placements at the database's bare INSERT+COMMIT rate. `GroupCommitter` runs on one
thread with its own connection, the way the heartbeat writer does (backend/heartbeats.py):
whatever callers submitted while the previous batch was being written becomes the next
batch, one transaction, one commit; each caller gets its own outcome once that commit is
durable.

The batch function decides what each item's outcome is and must leave the transaction
consistent for the items it succeeded on: an item that fails with an error it returns
must have changed nothing, or undone its change.
An item can also ask to be retried in the next batch (`RETRY`): for work that found every
row it could use held by another transaction, which must not wait while holding the rows
this batch already took. Any other exception fails the whole transaction: nothing of it is
kept, and each item is then run again alone, so that one bad item cannot fail the others.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from kumulus.backend.db import Database

log = logging.getLogger(__name__)

In = TypeVar("In")
Out = TypeVar("Out")


class Retry:
    """An item's outcome: run it again in the next batch (after this one commits)."""


RETRY: Final = Retry()


@dataclass
class _Pending(Generic[In, Out]):
    item: In
    give_up_at: float
    done: Future[Out] = field(default_factory=Future)


BatchFn = Callable[[Session, Sequence[In], Sequence[bool]], list["Out | BaseException | Retry"]]


class GroupCommitter(Generic[In, Out]):
    """Runs `batch(session, items, last_try)` on what callers submitted together and
    commits once. `batch` returns one outcome per item: a result, an exception to raise in
    the caller (it must have left nothing behind in the transaction), or RETRY. `last_try`
    marks items whose retry time is up: `batch` must then decide them (no RETRY)."""

    def __init__(
        self,
        db: Database,
        batch: BatchFn[In, Out],
        name: str,
        max_batch: int = 64,
        retry_for: float = 5.0,
    ) -> None:
        self._db = db
        self._batch = batch
        self._max_batch = max_batch
        self._retry_for = retry_for
        self._queue: queue.SimpleQueue[_Pending[In, Out] | None] = queue.SimpleQueue()
        self._retries: list[_Pending[In, Out]] = []  # only the writer thread touches it
        self._connection: Connection | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self.batches = 0  # for tests and benchmarks: how many transactions were needed

    def submit(self, item: In) -> Future[Out]:
        if not self._thread.is_alive():
            raise RuntimeError("group committer is stopped")
        pending: _Pending[In, Out] = _Pending(item, time.monotonic() + self._retry_for)
        self._queue.put(pending)
        return pending.done

    def run(self, item: In, timeout: float | None = None) -> Out:
        """Submit and wait for the committed outcome (raises the item's error)."""
        return self.submit(item).result(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop."""
        self._queue.put(None)
        self._thread.join(timeout)
        self._drop_connection()

    def _run(self) -> None:
        stopping = False
        while not stopping or self._retries:
            batch, self._retries = self._retries, []
            if batch and self._queue.empty():
                # Only retries: give the transactions holding their rows time to commit.
                time.sleep(0.002)
            if not batch:
                first = self._queue.get()
                if first is None:
                    return
                batch.append(first)
            while len(batch) < self._max_batch and not stopping:
                try:
                    pending = self._queue.get_nowait()
                except queue.Empty:
                    break
                if pending is None:
                    stopping = True
                    break
                batch.append(pending)
            self._write_safely(batch)

    def _write_safely(self, batch: list[_Pending[In, Out]]) -> None:
        now = time.monotonic()
        last_try = [p.give_up_at <= now for p in batch]
        try:
            outcomes = self._write([p.item for p in batch], last_try)
        except Exception as exc:
            if len(batch) == 1:
                log.exception("a group-committed transaction failed")
                batch[0].done.set_exception(exc)
                return
            log.warning("a batch of %d failed; running them one by one", len(batch))
            for pending in batch:
                self._write_safely([pending])
            return
        self.batches += 1
        for pending, outcome, final in zip(batch, outcomes, last_try, strict=True):
            if isinstance(outcome, Retry):
                if final:
                    pending.done.set_exception(RuntimeError("retried past its time"))
                else:
                    self._retries.append(pending)
            elif isinstance(outcome, BaseException):
                pending.done.set_exception(outcome)
            else:
                pending.done.set_result(outcome)

    def _write(self, items: list[In], last_try: list[bool]) -> list[Out | BaseException | Retry]:
        try:
            if self._connection is None or self._connection.closed:
                self._connection = self._db.engine.connect()
            with Session(bind=self._connection) as s:
                outcomes = self._batch(s, items, last_try)
                if len(outcomes) != len(items):
                    raise RuntimeError("the batch function must return one outcome per item")
                s.commit()
        except Exception:
            self._drop_connection()  # the next batch starts on a fresh connection
            raise
        return outcomes

    def _drop_connection(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
        self._connection = None
