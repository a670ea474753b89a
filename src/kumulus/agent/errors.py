"""Errors the agent's API turns into HTTP answers with a message the user can act on."""

from __future__ import annotations


class AgentError(Exception):
    status_code = 500

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFoundError(AgentError):
    status_code = 404


class InsufficientCapacityError(AgentError):
    status_code = 409


class UnenforceableError(AgentError):
    """A limit was asked that this host cannot enforce: refuse rather than ignore it."""

    status_code = 422


class EngineUnavailableError(AgentError):
    status_code = 503


class VMFailedError(AgentError):
    status_code = 502
