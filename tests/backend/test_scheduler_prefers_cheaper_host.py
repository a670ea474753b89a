"""Within a reputation tier the scheduler takes the cheaper host (by reference price), then
the less loaded; a better tier still wins over a lower price; and the price ceiling is
compared exactly, to the planck."""

from fastapi.testclient import TestClient

from kumulus.backend.scheduler import NoHostFitsError, Want, place, quote
from kumulus.core.money import hourly_price
from tests.backend.price_fixtures import GIB, UNIT, priced_host

CHEAP = (UNIT // 100, UNIT // 200, UNIT // 10_000)  # 0.01 vCPU, 0.005 GiB, 0.0001 GiB disk
DEAR = (UNIT // 50, UNIT // 100, UNIT // 5_000)  # twice that


def test_cheaper_host_wins_within_a_tier_even_when_busier(backend: TestClient) -> None:
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        dear = priced_host(db, DEAR, tier=7, load=0.0)
        cheap = priced_host(db, CHEAP, tier=7, load=0.9)
        want = Want(1, GIB, 10 * GIB)
        found = quote(db, want, 30)
        assert found is not None and found.host_id == cheap
        assert place(db, want, 30).host_id == cheap
        # Equal prices: the less loaded one.
        twin = priced_host(db, CHEAP, tier=7, load=0.0)
        assert place(db, want, 30).host_id == twin
        assert dear  # never chosen while a cheaper host of the tier fits


def test_a_better_tier_beats_a_lower_price(backend: TestClient) -> None:
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        priced_host(db, CHEAP, tier=4)
        trusted = priced_host(db, DEAR, tier=8)
        want = Want(1, GIB, 10 * GIB)
        found = quote(db, want, 30)
        assert found is not None and found.host_id == trusted
        assert found.price_hour == hourly_price(1, GIB, 10 * GIB, *DEAR)
        assert place(db, want, 30).host_id == trusted


def test_the_price_ceiling_is_exact(backend: TestClient) -> None:
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        # Prices and sizes whose float products are not exact: 0.3 vCPU, 1 GiB + 1 byte.
        prices = (3 * UNIT + 7, UNIT // 3, 10**9 + 1)
        host_id = priced_host(db, prices)
        memory, disk = GIB + 1, 3 * GIB + 5
        exact = hourly_price(0.3, memory, disk, *prices)
        try:
            place(db, Want(0.3, memory, disk, max_price_hour=exact - 1), 30)
            raise AssertionError("one planck under the price must not fit")
        except NoHostFitsError as exc:
            assert f"the current price of this VM is {exact}/h" in str(exc)
        placed = place(db, Want(0.3, memory, disk, max_price_hour=exact), 30)
        assert placed.host_id == host_id
        unit = (placed.price_cpu_hour, placed.price_memory_gib_hour, placed.price_disk_gib_hour)
        assert hourly_price(0.3, memory, disk, *unit) == exact
