"""The agent's errors: members of the one family (kumulus.core.errors) with codes that say
what happened on this host."""

from __future__ import annotations

from kumulus.core.errors import (
    ConflictError,
    InvalidError,
    KumulusError,
    NotFoundError,
    UnavailableError,
    UpstreamError,
)

AgentError = KumulusError

__all__ = [
    "AgentError",
    "EngineUnavailableError",
    "InsufficientCapacityError",
    "NotFoundError",
    "UnenforceableError",
    "VMFailedError",
    "WeakIsolationError",
]


class InsufficientCapacityError(ConflictError):
    code = "insufficient_capacity"


class UnenforceableError(InvalidError):
    """A limit was asked that this host cannot enforce: refuse rather than ignore it."""

    code = "unenforceable"


class EngineUnavailableError(UnavailableError):
    code = "engine_unavailable"


class VMFailedError(UpstreamError):
    """The VM did not come up (its container failed or sshd never answered)."""

    code = "vm_failed"


class WeakIsolationError(UnavailableError):
    """Userns-remap, the firewall or the disk quota is missing and the provider did not opt
    out (KUMULUS_AGENT_ALLOW_WEAK_ISOLATION): no VM is created until it is fixed."""

    code = "weak_isolation"
    retry_default = False
