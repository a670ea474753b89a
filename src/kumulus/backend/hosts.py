"""Host liveness: a host is online while its signed heartbeats keep arriving."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from kumulus.backend.clock import aware, utcnow
from kumulus.backend.models import Host
from kumulus.backend.schemas import HostPublic


def host_status(host: Host, ttl: float) -> Literal["online", "offline"]:
    if host.last_heartbeat_at is None:
        return "offline"
    fresh = utcnow() - aware(host.last_heartbeat_at) <= timedelta(seconds=ttl)
    return "online" if fresh else "offline"


def host_public(host: Host, ttl: float) -> HostPublic:
    return HostPublic(
        id=host.id,
        status=host_status(host, ttl),
        api_url=host.api_url,
        public_ip=host.public_ip,
        region=host.region,
        cpu=host.cpu,
        memory=host.memory,
        disk=host.disk,
        disk_quota=host.disk_quota,
        agent_version=host.agent_version,
        registered_at=aware(host.registered_at),
        last_heartbeat_at=aware(host.last_heartbeat_at) if host.last_heartbeat_at else None,
    )
