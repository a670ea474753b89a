"""Leases: held by one owner until they expire; over the database, two job runners never
run an exclusive job at the same time."""

import time

from fastapi.testclient import TestClient

from kumulus.backend.jobs.lease import DbLease
from kumulus.backend.leases import acquire, release
from kumulus.core.jobs import Job, JobRunner
from tests.overlap import OverlapProbe


def test_one_holder_until_the_lease_expires(backend: TestClient) -> None:
    db_ = backend.app.state.db  # type: ignore[attr-defined]
    now = time.time()
    with db_.session() as db:
        assert acquire(db, "job", "a", ttl=60, now=now)
        assert not acquire(db, "job", "b", ttl=60, now=now + 1)
        assert acquire(db, "job", "a", ttl=60, now=now + 30)  # renewal
        assert not acquire(db, "job", "b", ttl=60, now=now + 80)  # renewed until now + 90
        assert acquire(db, "job", "b", ttl=60, now=now + 91)  # a died: b takes over
        assert not acquire(db, "job", "a", ttl=60, now=now + 92)
        assert acquire(db, "other-job", "a", ttl=60, now=now)
        release(db, "other-job", "a")
        assert acquire(db, "other-job", "b", ttl=60, now=now + 1)  # no wait after a release


def test_two_runners_on_the_database_lease_never_overlap(backend: TestClient) -> None:
    lease = DbLease(backend.app.state.db)  # type: ignore[attr-defined]
    probe = OverlapProbe(hold=0.05)

    runners = [JobRunner([Job("exclusive", 0.01, 30, probe, lease=lease)]) for _ in range(2)]
    for runner in runners:
        runner.start()
    deadline = time.monotonic() + 10
    while probe.runs < 8 and time.monotonic() < deadline:
        time.sleep(0.02)
    for runner in runners:
        assert runner.stop(timeout=5) == []
    assert probe.runs >= 8 and probe.most == 1
