"""Placement honours the developer's price ceiling and prefers hosts with a better
reputation tier, spreading by load among equally priced hosts within a tier."""

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import update
from substrateinterface import Keypair

from kumulus.backend.clock import utcnow
from kumulus.backend.models import Host
from kumulus.backend.scheduler import NoHostFitsError, Want, place
from tests.backend.conftest import Actor, link_wallet, register_host

GIB = 1 << 30


def _online_hosts(backend: TestClient, provider: Actor, wallet: Keypair, n: int) -> list[str]:
    link_wallet(backend, provider, wallet)
    ids = [register_host(backend, provider, wallet) for _ in range(n)]
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        db.execute(update(Host).where(Host.id.in_(ids)).values(last_heartbeat_at=utcnow()))
        db.commit()
    return ids


def test_price_ceiling_filters_hosts_and_explains(
    backend: TestClient, provider: Actor, wallet: Keypair
) -> None:
    cheap, dear = _online_hosts(backend, provider, wallet, 2)
    for host_id, cpu_price in [(cheap, "0.01"), (dear, "0.1")]:
        resp = backend.patch(
            f"/v1/provider/hosts/{host_id}",
            headers=provider.headers,
            json={"prices": {"cpu": cpu_price, "memoryGib": "0.005", "diskGib": "0.0001"}},
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["prices"]["cpu"] == cpu_price
    # Make the dear host the emptier one, so only the price ceiling can send VMs elsewhere.
    db_ = backend.app.state.db  # type: ignore[attr-defined]
    with db_.session() as db:
        db.execute(update(Host).where(Host.id == cheap).values(load=0.5))
        db.commit()
        # 1 vCPU + 1 GiB + 10 GiB: 0.01 + 0.005 + 0.001 = 0.016 per hour on the cheap host.
        decimals = 10**12
        placed = place(db, Want(1, GIB, 10 * GIB, max_price_hour=16 * decimals // 1000), 30)
        assert placed.host_id == cheap
        assert (placed.price_cpu_hour, placed.price_disk_gib_hour) == (10**10, 10**8)
        # No ceiling: still the cheap one, busier as it is (price before load in a tier).
        assert place(db, Want(1, GIB, 10 * GIB), 30).host_id == cheap
        try:
            place(db, Want(1, GIB, 10 * GIB, max_price_hour=10**9), 30, money=str)
            raise AssertionError("nothing is that cheap")
        except NoHostFitsError as exc:
            assert "none under 1000000000/h; the cheapest costs 16000000000/h" in str(exc)


def test_bad_prices_are_422(backend: TestClient, provider: Actor, wallet: Keypair) -> None:
    (host_id,) = _online_hosts(backend, provider, wallet, 1)
    for prices in [
        {"cpu": "-1", "memoryGib": "0", "diskGib": "0"},
        {"cpu": "0.0000000000001", "memoryGib": "0", "diskGib": "0"},  # 13 decimals
        {"cpu": "abc", "memoryGib": "0", "diskGib": "0"},
    ]:
        resp = backend.patch(
            f"/v1/provider/hosts/{host_id}", headers=provider.headers, json={"prices": prices}
        )
        assert resp.status_code == 422, (prices, resp.text)
        assert "cpu" in resp.text


def test_profile_prices_apply_to_new_hosts(
    backend: TestClient, provider: Actor, wallet: Keypair
) -> None:
    prices = {"cpu": "0.02", "memoryGib": "0.001", "diskGib": "0"}
    resp = backend.put("/v1/provider/profile", headers=provider.headers, json={"prices": prices})
    assert resp.status_code == 200 and resp.json()["prices"] == prices
    (host_id,) = _online_hosts(backend, provider, wallet, 1)
    host = backend.get(f"/v1/provider/hosts/{host_id}", headers=provider.headers).json()
    assert host["prices"] == prices


def test_better_reputation_tier_wins_then_load_spreads(
    backend: TestClient, provider: Actor, wallet: Keypair
) -> None:
    good_a, good_b, shaky = _online_hosts(backend, provider, wallet, 3)
    db_ = backend.app.state.db  # type: ignore[attr-defined]
    with db_.session() as db:
        db.execute(update(Host).where(Host.id.in_([good_a, good_b])).values(rep_tier=9))
        db.execute(update(Host).where(Host.id == shaky).values(rep_tier=3))
        db.commit()
        first = [place(db, Want(1, GIB, GIB), 30).host_id for _ in range(8)]
        # 4 vCPU hosts: the two good ones take 4 each, alternating by load; then the shaky one.
        assert sorted(first) == sorted([good_a] * 4 + [good_b] * 4)
        assert first[:2] in ([good_a, good_b], [good_b, good_a])
        assert place(db, Want(1, GIB, GIB), 30).host_id == shaky


def test_offline_hosts_are_never_chosen(
    backend: TestClient, provider: Actor, wallet: Keypair
) -> None:
    (host_id,) = _online_hosts(backend, provider, wallet, 1)
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        db.execute(
            update(Host)
            .where(Host.id == host_id)
            .values(last_heartbeat_at=utcnow() - timedelta(seconds=31))
        )
        db.commit()
        try:
            place(db, Want(1, GIB, GIB), 30)
            raise AssertionError("the only host is offline")
        except NoHostFitsError as exc:
            assert "no host is online" in str(exc)
