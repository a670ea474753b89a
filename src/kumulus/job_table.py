"""`kumulus backend jobs`: the named jobs of one backend process as a table, read from its
`/metrics` (core/job_metrics.py, and the lease holders every replica reads from the
database). Parsing and printing only: the metrics are the one source, so this view, a
Prometheus and a Grafana panel never disagree."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families


@dataclass
class JobRow:
    runs: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    last_duration: float | None = None
    last_success: float | None = None
    holders: list[str] = field(default_factory=list)
    last_holder: str | None = None  # the latest holder, once its lease is released


_FIELDS = {
    "kumulus_job_runs_total": "runs",
    "kumulus_job_failures_total": "failures",
    "kumulus_job_consecutive_failures": "consecutive_failures",
    "kumulus_job_last_duration_seconds": "last_duration",
    "kumulus_job_last_success_timestamp_seconds": "last_success",
}


def parse(text: str) -> dict[str, JobRow]:
    """Job rows from a Prometheus text exposition."""
    rows: dict[str, JobRow] = defaultdict(JobRow)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            job = sample.labels.get("job")
            if job is None:
                continue
            if sample.name == "kumulus_job_lease_expires_timestamp_seconds":
                rows[job].holders.append(sample.labels.get("holder", "?"))
            elif sample.name == "kumulus_job_lease_last_holder" and not sample.value:
                rows[job].last_holder = sample.labels.get("holder", "?")
            elif sample.name in _FIELDS:
                name = _FIELDS[sample.name]
                value = sample.value
                setattr(rows[job], name, value if "last" in name else int(value))
    return dict(rows)


def render(rows: dict[str, JobRow], now: float | None = None) -> str:
    """A fixed-width table, failing jobs flagged with `!`; a lease nobody holds now shows
    its last holder in parentheses."""
    now = time.time() if now is None else now
    lines = [
        f"{'job':<16} {'runs':>6} {'fails':>6} {'in a row':>8} {'last':>8} "
        f"{'ok ago':>8}  lease holder"
    ]
    for job, r in sorted(rows.items()):
        last = "-" if r.last_duration is None else f"{r.last_duration:.2f}s"
        ago = "never" if r.last_success is None else f"{max(0.0, now - r.last_success):.0f}s"
        flag = "!" if r.consecutive_failures else " "
        holder = ", ".join(r.holders) or (f"(last: {r.last_holder})" if r.last_holder else "-")
        lines.append(
            f"{job:<16} {r.runs:>6} {r.failures:>6} {r.consecutive_failures:>7}{flag} "
            f"{last:>8} {ago:>8}  {holder}"
        )
    return "\n".join(lines)
