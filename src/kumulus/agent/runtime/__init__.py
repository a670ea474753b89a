"""The VM runtime contract (base) and its Docker implementation (docker_driver)."""

from kumulus.agent.runtime.base import (
    EngineError,
    EngineInfo,
    PortInUseError,
    VMInfo,
    VMNotFoundError,
    VMRuntime,
    VMSpec,
    VMUsage,
)

__all__ = [
    "EngineError",
    "EngineInfo",
    "PortInUseError",
    "VMInfo",
    "VMNotFoundError",
    "VMRuntime",
    "VMSpec",
    "VMUsage",
]
