"""ATTACK (pricing): the scheduler ranks hosts of a tier by a *reference* price (the price of
a 1 vCPU / 2 GiB / 20 GiB VM), not by what the VM asked for would cost. A provider prices
only what the reference VM hardly uses (memory here) just under an honest host's reference
price: its host ranks first for every VM, and a memory-heavy VM pays nearly twice what the
honest host of the same tier would charge. The quote follows the same ranking, so the
CLI's maxPricePerHour (quote + tolerance) accepts it: "cheaper hosts first within a tier"
does not hold for the VM actually being placed."""

from fastapi.testclient import TestClient

from kumulus.backend.scheduler import Want, place, quote
from kumulus.core.money import hourly_price
from tests.backend.price_fixtures import GIB, UNIT, priced_host

HONEST = (UNIT // 100, UNIT // 200, UNIT // 10_000)  # reference price 0.022 UNIT/h
# 0 per vCPU, 0.0109 per GiB of memory, 0 per GiB of disk: reference price 0.0218 UNIT/h.
GAMED = (0, 109 * UNIT // 10_000, 0)


def test_the_cheaper_host_for_this_vm_wins_within_a_tier(backend: TestClient) -> None:
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        honest = priced_host(db, HONEST, tier=7)
        priced_host(db, GAMED, tier=7)
        want = Want(2, 24 * GIB, 10 * GIB)
        honest_price = hourly_price(want.cpu, want.memory, want.disk, *HONEST)
        gamed_price = hourly_price(want.cpu, want.memory, want.disk, *GAMED)
        assert 10 * gamed_price > 18 * honest_price  # 0.2616 vs 0.141 UNIT/h
        found = quote(db, want, 30)
        assert found is not None
        assert found.price_hour <= honest_price, (
            f"quoted {found.price_hour} planck/h although a host of the same tier takes "
            f"the VM for {honest_price}"
        )
        assert place(db, want, 30).host_id == honest
