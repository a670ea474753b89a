"""A batch of placements made in one pass (backend/batch_placement.py) chooses the hosts
that placing the VMs one by one (scheduler.place_once) would, and never overcommits, refuses
only what cannot fit, and respects regions, price limits, isolation and excluded hosts."""

from __future__ import annotations

import random
import secrets
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from kumulus.backend import scheduler
from kumulus.backend.batch_placement import place_many
from kumulus.backend.clock import utcnow
from kumulus.backend.models import Account, Host
from kumulus.backend.scheduler import (
    SHORTLIST,
    HostsBusyError,
    NoHostFitsError,
    Placement,
    Want,
    place_once,
)
from kumulus.core.money import hourly_price

GIB = 1 << 30
TTL = 60.0


def _hosts(db: Session, rng: random.Random, count: int, small: bool) -> dict[str, Host]:
    account = Account(
        email=f"p{secrets.token_hex(4)}@x.io", password_hash="x", role="provider",
        created_at=utcnow(),
    )  # fmt: skip
    db.add(account)
    db.flush()
    hosts = {}
    for n in range(count):
        host = Host(
            id=f"h{n:04d}{secrets.token_hex(3)}",
            account_id=account.id,
            wallet_address="w",
            api_url="http://127.0.0.1:1",
            public_ip="127.0.0.1",
            region=rng.choice(("eu", "us")),
            cpu=rng.choice((2.0, 4.0)) if small else 64.0,
            memory=(rng.choice((4, 8)) if small else 256) * GIB,
            disk=(rng.choice((50, 100)) if small else 4000) * GIB,
            disk_quota=True,
            isolated=rng.random() < 0.9,
            registered_at=utcnow(),
            last_heartbeat_at=utcnow(),
            rep_tier=rng.choice((4, 5, 5, 5)),
        )
        # Distinct prices: no ties in the order, so both ways must pick the same host.
        host.set_prices(1000 + n * 7 + rng.randrange(5), 300 + rng.randrange(400), 1 + n % 13)
        db.add(host)
        hosts[host.id] = host
    db.commit()
    return hosts


def _outcome(outcome: Placement | Exception) -> str:
    return outcome.host_id if isinstance(outcome, Placement) else type(outcome).__name__


def test_one_pass_chooses_what_one_by_one_would(backend: TestClient) -> None:
    rng = random.Random(14)
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        _hosts(db, rng, SHORTLIST * 3, small=False)
        wants = [
            Want(cpu=rng.choice((0.25, 0.5, 1.0, 2.0)), memory=rng.choice((1, 2, 4)) * GIB,
                 disk=rng.choice((10, 20)) * GIB, region="eu")
            for _ in range(48)
        ]  # fmt: skip
        batch = [_outcome(o) for o in place_many(db, wants, TTL)]
        db.rollback()
        one_by_one = [_outcome(place_once(db, want, TTL)) for want in wants]
        db.rollback()
    assert batch == one_by_one
    assert all(b.startswith("h") for b in batch)  # none refused
    assert len(set(batch)) > 1  # the cheapest host fills up: its load pushes it back


@pytest.mark.parametrize("levels", [1, 3])
def test_one_pass_chooses_what_one_by_one_would_among_equal_prices(
    backend: TestClient, levels: int
) -> None:
    """Hosts priced alike (one price, or a few levels, as a region's providers often are):
    the pass stops at the first host at the lowest price when the hosts read untouched by
    the batch cover a shortlist (`batch_placement._choose`); otherwise it looks on. Loads
    differ, so that the order has no ties and both ways must pick the same host."""
    rng = random.Random(levels)
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        hosts = list(_hosts(db, rng, SHORTLIST * 3, small=False).values())
        for n, host in enumerate(hosts):
            level = rng.randrange(levels)
            host.set_prices(1000 + 500 * level, 300 + 100 * level, 1 + level)
            host.reserved_cpu = n * 0.0131  # distinct loads, and none a VM apart
            host.load = host.reserved_cpu / host.cpu
        db.commit()
        wants = [
            Want(cpu=rng.choice((0.5, 4.0, 16.0)), memory=rng.choice((1, 32)) * GIB,
                 disk=10 * GIB, region="eu",
                 max_price_hour=rng.choice((None, 60_000)))
            for _ in range(96)
        ]  # fmt: skip
        batch = [_outcome(o) for o in place_many(db, wants, TTL)]
        db.rollback()
        one_by_one = [_once(db, want) for want in wants]
        db.rollback()
    assert batch == one_by_one
    assert sum(b.startswith("h") for b in batch) > len(wants) // 2


def test_one_pass_leaves_to_place_once_what_lies_past_its_read(
    backend: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hosts priced alike, few of them big. The read (the SHORTLIST + n least loaded that
    fit the smallest VM) holds 3 big hosts: a big VM's shortlist goes on past it, so the
    cheapest big host read is not known to be the one the index walk gives first (a big
    host not read may come before it once the batch has loaded it). Such a VM is placed
    by place_once, even when the host read is at the lowest price there is; the small
    VMs, whose shortlists the read covers, are chosen in memory."""
    rng = random.Random(5)
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        hosts = list(_hosts(db, rng, 300, small=False).values())
        for n, host in enumerate(hosts):
            host.set_prices(1000, 300, 1)
            host.region, host.isolated, host.rep_tier = "eu", True, 5
            host.cpu = 40.0 if n in (5, 40, 70) or (n >= 150 and n % 3 == 0) else 8.0
            host.load = n * 0.001  # distinct, in the order of n
            host.reserved_cpu = host.load * host.cpu
        db.commit()
        big, small = Want(cpu=16.0, memory=GIB, disk=GIB), Want(cpu=1.0, memory=GIB, disk=GIB)
        wants = [big] * 6 + [small] * 14
        alone: list[Want] = []
        place_once_itself = scheduler.place_once

        def recorded(db: Session, want: Want, *args: object) -> Placement:
            alone.append(want)
            return place_once_itself(db, want, *args)  # type: ignore[arg-type]

        monkeypatch.setattr(scheduler, "place_once", recorded)
        outcomes = place_many(db, wants, TTL)
        db.rollback()
    assert all(isinstance(o, Placement) for o in outcomes), outcomes
    assert alone == [big] * 6


def _once(db: Session, want: Want) -> str:
    try:
        return _outcome(place_once(db, want, TTL))
    except NoHostFitsError as exc:
        return _outcome(exc)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_mixed_batches_fit_and_never_overcommit(backend: TestClient, seed: int) -> None:
    rng = random.Random(seed)
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        hosts = _hosts(db, rng, SHORTLIST + 40, small=True)
        ids = list(hosts)
        wants, excludes = [], []
        for _ in range(160):  # more than fits: some must be refused
            want = Want(
                cpu=rng.choice((0.5, 1.0, 2.0, 4.0)),
                memory=rng.choice((1, 2, 4)) * GIB,
                disk=rng.choice((10, 40)) * GIB,
                region=rng.choice(("eu", "us", None)),
                max_price_hour=rng.choice((None, None, 2500, 4000)),
                allow_weak=rng.random() < 0.3,
            )
            wants.append(want)
            excludes.append(frozenset(rng.sample(ids, 3)) if rng.random() < 0.2 else frozenset())
        outcomes = place_many(db, wants, TTL, excludes, price_limit=6000)
        db.expire_all()  # what the database holds now, not the objects as they were
        reserved = {
            h.id: (h.reserved_cpu, h.reserved_memory, h.reserved_disk)
            for h in db.scalars(select(Host).where(Host.id.in_(ids)))
        }
        placed: dict[str, list[Want]] = {}
        refused = 0
        for want, exclude, outcome in zip(wants, excludes, outcomes, strict=True):
            if isinstance(outcome, HostsBusyError):
                raise AssertionError("nothing else holds these hosts")
            if isinstance(outcome, NoHostFitsError):
                refused += 1
                continue
            host = hosts[outcome.host_id]
            assert outcome.host_id not in exclude
            assert want.region in (None, host.region)
            assert want.allow_weak or host.isolated
            price = hourly_price(
                want.cpu, want.memory, want.disk, outcome.price_cpu_hour,
                outcome.price_memory_gib_hour, outcome.price_disk_gib_hour,
            )  # fmt: skip
            assert price <= min(6000, want.max_price_hour or 6000)
            placed.setdefault(outcome.host_id, []).append(want)
        assert refused and len(placed) > 20
        for host_id, host in hosts.items():
            mine = placed.get(host_id, [])
            cpu, memory, disk = reserved[host_id]
            assert cpu == pytest.approx(sum(w.cpu for w in mine))
            assert memory == sum(w.memory for w in mine)
            assert disk == sum(w.disk for w in mine)
            assert cpu <= host.cpu + 1e-9 and memory <= host.memory and disk <= host.disk
        # What was refused did not fit anywhere once the batch was placed (a refusal is
        # never for lack of trying).
        for want, exclude, outcome in zip(wants, excludes, outcomes, strict=True):
            if isinstance(outcome, NoHostFitsError):
                with pytest.raises(NoHostFitsError):
                    place_once(db, replace(want), TTL, set(exclude), price_limit=6000)
        db.rollback()


_FILL = text("UPDATE hosts SET reserved_cpu = cpu, reserved_memory = memory WHERE id = :id")


def test_room_taken_after_the_read_is_not_overcommitted(
    backend: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The best hosts have no room left by the time the batch's UPDATE writes them: the
    UPDATE's capacity check refuses them and their VMs are placed on other hosts. (The
    batch locks the hosts it reads, so another replica cannot fill them in between any
    more; the room is taken here in the batch's own transaction, which its UPDATE sees as
    it would see a change the read missed. The check is what keeps a wrong in-memory
    choice from ever overcommitting a host.)"""
    database = backend.app.state.db  # type: ignore[attr-defined]
    rng = random.Random(7)
    with database.session() as db:
        ids = list(_hosts(db, rng, SHORTLIST + 8, small=False))
    read = scheduler.candidates
    taken: list[str] = []

    def read_then_fill(db: Session, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        rows = read(db, *args, **kwargs)  # type: ignore[arg-type]
        for row in rows[:4]:
            db.execute(
                text(
                    "UPDATE hosts SET reserved_cpu = cpu, reserved_memory = memory WHERE id = :id"
                ),
                {"id": row[0]},
            )
            taken.append(row[0])
        return rows

    monkeypatch.setattr(scheduler, "candidates", read_then_fill)
    wants = [Want(cpu=1.0, memory=GIB, disk=GIB) for _ in range(12)]
    with database.session() as db:
        outcomes = place_many(db, wants, TTL)
        db.commit()
    assert len(taken) == 4
    assert all(isinstance(o, Placement) for o in outcomes)
    assert not {o.host_id for o in outcomes if isinstance(o, Placement)} & set(taken)
    with database.session() as db:
        for host in db.scalars(select(Host).where(Host.id.in_(ids))):
            assert host.reserved_cpu <= host.cpu + 1e-9 and host.reserved_memory <= host.memory
