"""Host reputation: how reliably a host was there (uptime from its signed heartbeats) and
how its leases ended. The scheduler prefers higher tiers (floor(score * 10)).

Uptime over a window is the seconds the host was heard from (credited by the heartbeat
writer: the current hour on the host row, earlier hours in host_uptime) over the seconds
it could have been (since registration, within the window; the hour a window starts in
counts for its share inside the window), smoothed by a prior of one
hour at 50% so a host seen for a minute is neither perfect nor worthless."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from kumulus.backend.clock import aware, utcnow
from kumulus.backend.heartbeats import hour_of
from kumulus.backend.models import Host, HostUptime

_PRIOR_SECONDS = 3600.0
_PRIOR_UPTIME = 0.5
WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}


@dataclass(frozen=True)
class Score:
    uptime_24h: float
    uptime_7d: float
    uptime_30d: float
    reputation: float
    tier: int


def uptime(up_seconds: float, observed_seconds: float) -> float:
    smoothed = (up_seconds + _PRIOR_SECONDS * _PRIOR_UPTIME) / (
        max(observed_seconds, 0.0) + _PRIOR_SECONDS
    )
    return min(1.0, max(0.0, smoothed))


def lease_success(completed: int, failed: int) -> float:
    """Share of leases that ended well, with one of each assumed (Laplace)."""
    return (completed + 1) / (completed + failed + 2)


def score(
    up: dict[str, float],
    registered_at: datetime,
    now: datetime,
    completed: int,
    failed: int,
    drift: int = 0,
    capacity_flagged: bool = False,
) -> Score:
    """`drift`: containers the host reports that the backend never placed (each costs 0.05,
    at most 0.2): a host running things behind the platform's back is less trusted.
    `capacity_flagged`: the host declares more than the machine it reports (hosts.
    capacity_problem); it loses half its reputation and sits in tier 0, below every host
    that tells the truth, until its declaration and its reports agree."""
    values = {}
    for name, window in WINDOWS.items():
        since = max(aware(registered_at), now - window)
        values[name] = uptime(up.get(name, 0.0), (now - since).total_seconds())
    reputation = 0.2 * values["24h"] + 0.5 * values["7d"] + 0.3 * lease_success(completed, failed)
    reputation = max(0.0, reputation - 0.05 * min(max(drift, 0), 4))
    if capacity_flagged:
        reputation /= 2
    return Score(
        uptime_24h=values["24h"],
        uptime_7d=values["7d"],
        uptime_30d=values["30d"],
        reputation=reputation,
        tier=0 if capacity_flagged else min(10, int(reputation * 10)),
    )


def _weights(now: datetime) -> dict[str, tuple[int, float]]:
    """Per window: its first hour and the share of that hour inside the window. Uptime is
    kept by whole hours, so the hour in which a window starts counts in proportion: counted
    whole, up to 59 minutes from before the window would raise the uptime."""
    out = {}
    for name, window in WINDOWS.items():
        start = now - window
        first = hour_of(start)
        out[name] = (first, ((first + 1) * 3600 - start.timestamp()) / 3600)
    return out


def recompute(db: Session, now: datetime | None = None) -> int:
    """Refresh every host's uptimes, reputation and tier; returns how many hosts. Idempotent,
    so several backend processes may run it.

    The past hours (host_uptime) and the current hour (on the host row) are read in one
    statement, so one snapshot: a heartbeat that moves an hour from the row to host_uptime
    between two reads would otherwise leave it out of both (or count it in both)."""
    now = now or utcnow()
    weights = _weights(now)

    def in_window(hour: Any, seconds: Any, name: str) -> Any:
        first, share = weights[name]
        return case((hour > first, seconds), (hour == first, seconds * share), else_=0.0)

    past = (
        select(
            HostUptime.host_id,
            *(
                func.sum(in_window(HostUptime.hour, HostUptime.up_seconds, name)).label(name)
                for name in WINDOWS
            ),
        )
        .where(HostUptime.hour >= min(first for first, _ in weights.values()))
        .group_by(HostUptime.host_id)
        .subquery()
    )
    hosts = db.execute(
        select(
            Host.id,
            Host.registered_at,
            Host.leases_completed,
            Host.leases_failed,
            Host.unknown_vms,
            Host.capacity_problem,
            *(
                (
                    func.coalesce(past.c[name], 0.0)
                    + func.coalesce(in_window(Host.uptime_hour, Host.uptime_seconds, name), 0.0)
                ).label(name)
                for name in WINDOWS
            ),
        ).outerjoin(past, past.c.host_id == Host.id)
    ).all()
    rows = []
    for host in hosts:
        s = score(
            {name: float(getattr(host, name)) for name in WINDOWS},
            host.registered_at,
            now,
            host.leases_completed,
            host.leases_failed,
            host.unknown_vms,
            capacity_flagged=host.capacity_problem is not None,
        )
        rows.append(
            {
                "id": host.id,
                "uptime_24h": s.uptime_24h,
                "uptime_7d": s.uptime_7d,
                "uptime_30d": s.uptime_30d,
                "reputation": s.reputation,
                "rep_tier": s.tier,
            }
        )
    if rows:
        db.execute(update(Host), rows)
    db.commit()
    return len(rows)


def uptime_by_hour(db: Session, host_id: str) -> dict[int, float]:
    """Seconds `host_id` was heard from, by hour since the epoch: host_uptime's hours and
    the one on its host row, added up (an hour is in both when the upgrade to host-row
    uptime came within it)."""
    hours = {
        hour: seconds
        for hour, seconds in db.execute(
            select(HostUptime.hour, HostUptime.up_seconds).where(HostUptime.host_id == host_id)
        ).tuples()
    }
    current = db.execute(
        select(Host.uptime_hour, Host.uptime_seconds).where(Host.id == host_id)
    ).one_or_none()
    if current is not None and current.uptime_hour is not None:
        hours[current.uptime_hour] = hours.get(current.uptime_hour, 0.0) + current.uptime_seconds
    return hours
