"""Prometheus metrics of one agent (`GET /metrics`, loopback or the metrics token).

- VMs by engine state and the isolation level are read at scrape time (the engine's list,
  the service's isolation report), so they are never stale;
- create -> SSH latency is observed by the service when a create answers `Running`;
- engine errors are counted by operation by `CountingRuntime`, which wraps the runtime the
  service uses (a VM that is not there, or a port another program took, is not an engine
  fault and is not counted)."""

from __future__ import annotations

import logging
from collections import Counter as Tally
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kumulus.agent.runtime import EngineError, VMRuntime
from kumulus.agent.runtime.base import PortInUseError, VMNotFoundError

if TYPE_CHECKING:
    from kumulus.agent.service import VMService

log = logging.getLogger(__name__)

# Seconds from a create request to sshd's banner (the target is p50 1 s, p99 2 s).
CREATE_BUCKETS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)


class AgentMetrics:
    """Per-process counters of one agent, on `registry`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.create_to_ssh = Histogram(
            "kumulus_agent_create_to_ssh_seconds",
            "from a create request to the VM's sshd answering (creates that answer Running)",
            buckets=CREATE_BUCKETS,
            registry=registry,
        )
        self.engine_errors = Counter(
            "kumulus_agent_engine_errors",
            "container engine operations that failed, by operation",
            ["operation"],
            registry=registry,
        )

    def created(self, seconds: float) -> None:
        self.create_to_ssh.observe(seconds)


class StateCollector(Collector):
    """VMs by engine state and isolation, read from the service at scrape time."""

    def __init__(self, service: Callable[[], VMService]) -> None:
        self._service = service

    def collect(self) -> Iterable[Metric]:
        service = self._service()
        vms = GaugeMetricFamily(
            "kumulus_agent_vms", "this agent's VMs by engine state", labels=["state"]
        )
        try:
            for state, n in sorted(Tally(vm.state for vm in service.runtime.list()).items()):
                vms.add_metric([state], n)
        except EngineError as exc:  # the scrape still answers; the engine error is counted
            log.warning("VM states not read for metrics: %s", exc)
        yield vms
        report = service.isolation().report()
        yield GaugeMetricFamily(
            "kumulus_agent_isolation_full",
            "1 while VMs are fully isolated (userns-remap, firewall, disk quota)",
            value=int(report.level == "full"),
        )
        missing = GaugeMetricFamily(
            "kumulus_agent_isolation_missing",
            "1 for each isolation measure missing now",
            labels=["measure"],
        )
        for measure in report.missing:
            missing.add_metric([measure], 1)
        yield missing


_NOT_FAULTS = (VMNotFoundError, PortInUseError)


class CountingRuntime:
    """A VMRuntime that counts engine errors by operation and is otherwise the runtime it
    wraps (every attribute is the wrapped one's)."""

    def __init__(self, runtime: VMRuntime, errors: Counter) -> None:
        self._runtime = runtime
        self._errors = errors

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._runtime, name)
        if not callable(value):
            return value

        def counted(*args: Any, **kwargs: Any) -> Any:
            try:
                return value(*args, **kwargs)
            except _NOT_FAULTS:
                raise
            except EngineError:
                self._errors.labels(name).inc()
                raise

        return counted

    @staticmethod
    def wrap(runtime: VMRuntime, metrics: AgentMetrics) -> VMRuntime:
        return cast(VMRuntime, CountingRuntime(runtime, metrics.engine_errors))
