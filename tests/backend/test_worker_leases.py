"""One payout sender at a time: a lease is held by one owner until it expires."""

import time

from fastapi.testclient import TestClient

from kumulus.backend.leases import acquire, release


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


def test_scheduled_payouts_come_once_per_interval_across_processes(backend: TestClient) -> None:
    from kumulus.backend.maintenance import Maintenance

    app = backend.app
    first = Maintenance(app.state.db, app.state.settings, app.state.keypair)  # type: ignore[attr-defined]
    second = Maintenance(app.state.db, app.state.settings, app.state.keypair)  # type: ignore[attr-defined]
    assert first._payout_schedule(force=False) == 10**12  # due: the minimum (1 UNIT)
    assert first._payout_schedule(force=False) is None
    assert second._payout_schedule(force=False) is None  # another process, same schedule
    assert second._payout_schedule(force=True) == 10**12
