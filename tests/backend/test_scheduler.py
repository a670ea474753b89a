"""Placement: fits, region, spreading, and no overcommit under concurrent placements."""

import secrets
from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient
from sqlalchemy import select

from kumulus.backend.clock import utcnow
from kumulus.backend.models import Account, Host
from kumulus.backend.scheduler import NoHostFitsError, Want, place

GIB = 1 << 30


def _hosts(backend: TestClient, specs: list[tuple[float, int, str]]) -> list[str]:
    db_ = backend.app.state.db  # type: ignore[attr-defined]
    with db_.session() as db:
        account = Account(
            email=f"p{secrets.token_hex(3)}@x.io",
            password_hash="x",
            role="provider",
            created_at=utcnow(),
        )
        db.add(account)
        db.flush()
        ids = []
        for cpu, mem_gib, region in specs:
            host = Host(
                id=secrets.token_hex(8),
                account_id=account.id,
                wallet_address="w",
                api_url="http://127.0.0.1:1",
                public_ip="127.0.0.1",
                region=region,
                cpu=cpu,
                memory=mem_gib * GIB,
                disk=100 * GIB,
                disk_quota=True,
                isolated=True,
                registered_at=utcnow(),
                last_heartbeat_at=utcnow(),
            )
            db.add(host)
            ids.append(host.id)
        db.commit()
    return ids


def test_places_where_it_fits_spreads_and_explains(backend: TestClient) -> None:
    small, big, us = _hosts(backend, [(2, 4, "eu"), (8, 16, "eu"), (8, 16, "us")])
    db_ = backend.app.state.db  # type: ignore[attr-defined]
    with db_.session() as db:
        assert place(db, Want(4, 8 * GIB, 10 * GIB, "eu"), 30).host_id == big
        # Spreading: the emptier host gets the next small VM.
        assert place(db, Want(1, 1 * GIB, 1 * GIB, "eu"), 30).host_id == small
        try:
            place(db, Want(1, 20 * GIB, 1 * GIB, "eu"), 30)
            raise AssertionError("should not fit")
        except NoHostFitsError as exc:
            assert str(exc) == (
                "no provider fits: 2 host(s) online in region eu, none has 20g "
                "memory (largest free is 8g) free"
            )
        assert place(db, Want(1, 1 * GIB, 1 * GIB, "us"), 30).host_id == us


def test_concurrent_placements_never_overcommit(backend: TestClient) -> None:
    ids = _hosts(backend, [(4, 8, "eu") for _ in range(5)])
    db_ = backend.app.state.db  # type: ignore[attr-defined]

    def one(_: int) -> str | None:
        with db_.session() as db:
            try:
                return place(db, Want(0.5, GIB, GIB, "eu"), 30).host_id
            except NoHostFitsError:
                return None

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(one, range(200)))
    placed = [r for r in results if r]
    assert len(placed) == 40  # 5 hosts x 8 VMs of 0.5 vCPU
    with db_.session() as db:
        for host in db.scalars(select(Host).where(Host.id.in_(ids))):
            assert host.reserved_cpu == 4.0 and host.reserved_memory == 8 * GIB
            assert placed.count(host.id) == 8
