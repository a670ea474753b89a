"""GroupCommitter: what arrives while a batch is written becomes the next batch, one
commit; an item asking to be retried runs in a later batch; a batch that fails is run
again item by item, so that one bad item fails alone."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from kumulus.backend.db import Database
from kumulus.backend.group_commit import RETRY, GroupCommitter, Retry


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'g.db'}")
    with database.engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (v INTEGER NOT NULL UNIQUE)"))
    return database


def _rows(db: Database) -> list[int]:
    with db.engine.connect() as conn:
        return sorted(r[0] for r in conn.execute(text("SELECT v FROM t")))


def test_items_arriving_together_share_one_commit(db: Database) -> None:
    started, release = threading.Event(), threading.Event()
    sizes: list[int] = []

    def batch(
        s: Session, items: Sequence[int], _: Sequence[bool]
    ) -> list[int | BaseException | Retry]:
        sizes.append(len(items))
        started.set()
        release.wait(10)
        for v in items:
            s.execute(text("INSERT INTO t (v) VALUES (:v)"), {"v": v})
        return [v * 10 for v in items]

    committer: GroupCommitter[int, int] = GroupCommitter(db, batch, "test")
    first = committer.submit(0)
    assert started.wait(10)
    rest = [committer.submit(v) for v in range(1, 21)]  # queued while batch 1 is written
    release.set()
    assert [f.result(10) for f in [first, *rest]] == [v * 10 for v in range(21)]
    committer.close()
    assert sizes == [1, 20] and committer.batches == 2
    assert _rows(db) == list(range(21))


def test_retries_wait_for_a_later_batch_and_failures_stay_alone(db: Database) -> None:
    seen: list[list[int]] = []

    def batch(
        s: Session, items: Sequence[int], last: Sequence[bool]
    ) -> list[int | BaseException | Retry]:
        seen.append(list(items))
        out: list[int | BaseException | Retry] = []
        for v in items:
            if v == 7 and len(seen) == 1:
                out.append(RETRY)  # busy the first time round
                continue
            if v == 9:
                out.append(ValueError("refused"))  # an expected refusal: nothing written
                continue
            s.execute(text("INSERT INTO t (v) VALUES (:v)"), {"v": v})  # 5 twice: fails
            out.append(v)
        return out

    committer: GroupCommitter[int, int] = GroupCommitter(db, batch, "test")
    with db.engine.begin() as conn:
        conn.execute(text("INSERT INTO t (v) VALUES (5)"))
    futures = {v: committer.submit(v) for v in (7, 9, 5, 1)}
    assert futures[7].result(10) == 7
    assert futures[1].result(10) == 1
    with pytest.raises(ValueError, match="refused"):
        futures[9].result(10)
    with pytest.raises(Exception, match="UNIQUE"):
        futures[5].result(10)  # the duplicate fails alone; the others are stored
    committer.close()
    assert _rows(db) == [1, 5, 7]
