"""The VM runtime contract (base) and its Docker implementation (docker_driver)."""

from kumulus.agent.runtime.base import (
    EngineInfo,
    PortInUseError,
    RuntimeFailure,
    VMInfo,
    VMNotFoundError,
    VMRuntime,
    VMSpec,
    VMUsage,
)

__all__ = [
    "EngineInfo",
    "PortInUseError",
    "RuntimeFailure",
    "VMInfo",
    "VMNotFoundError",
    "VMRuntime",
    "VMSpec",
    "VMUsage",
]
