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
