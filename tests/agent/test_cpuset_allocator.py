"""Each VM is pinned to ceil(cpu) cores, the least used first, so VMs spread over the host;
cores come back when a VM goes, and a restarted agent reads the pins back from the engine."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from kumulus.agent.cpusets import CpusetAllocator, cores_for, host_cores
from kumulus.agent.runtime import VMInfo, VMSpec
from kumulus.agent.runtime.docker_driver import format_cpuset, parse_cpuset
from tests.fakes import FakeRuntime


def _vm(vm_id: str, cpu: float, cpuset: frozenset[int] | None = None) -> VMInfo:
    spec = VMSpec(
        vm_id=vm_id,
        username="dev",
        ssh_key="",
        cpu=cpu,
        memory=1 << 30,
        disk=None,
        ssh_bind="127.0.0.1",
        ssh_port=2200,
        created_at=0.0,
        cpuset=cpuset,
    )
    return VMInfo(spec=spec, state="running")


def _never_read(vm_id: str) -> frozenset[int] | None:
    raise AssertionError(f"read {vm_id} although it was remembered")


def test_ceil_of_cpu_cores_at_least_one_at_most_the_host() -> None:
    # Float noise (sums of vCPU fractions) is not another core.
    assert [cores_for(c, 4) for c in (0.25, 1, 1.5, 3 + 1e-12, 3.01, 8)] == [1, 1, 2, 3, 4, 4]


def test_vms_spread_over_the_least_used_cores() -> None:
    alloc = CpusetAllocator(range(4), _never_read)
    vms: list[VMInfo] = []
    chosen = []
    for n, cpu in enumerate([1, 1, 2, 0.5, 1]):
        cores = alloc.choose(cpu, vms)
        alloc.remember(f"vm{n}", cores)
        vms.append(_vm(f"vm{n}", cpu))
        chosen.append(sorted(cores))
    # The 2-vCPU VM takes the two idle cores; on ties the lower core number wins; the last
    # VM goes to core 1 (load 1.0), not core 0 (1.5: the 1-vCPU and the 0.5-vCPU VM).
    assert chosen == [[0], [1], [2, 3], [0], [1]]
    assert alloc.load(vms) == {0: 1.5, 1: 2.0, 2: 1.0, 3: 1.0}


def test_a_deleted_vms_cores_are_used_again() -> None:
    alloc = CpusetAllocator(range(2), _never_read)
    first = alloc.choose(1, [])
    alloc.remember("a", first)
    second = alloc.choose(1, [_vm("a", 1)])
    alloc.remember("b", second)
    assert first != second
    # "a" is gone from the engine's list: its core is the least used again.
    assert alloc.choose(1, [_vm("b", 1)]) == first


def test_a_restarted_agent_reads_the_pins_from_the_engine() -> None:
    engine = {"a": frozenset({0, 1}), "b": frozenset({2}), "c": None}
    reads: list[str] = []

    def read(vm_id: str) -> frozenset[int] | None:
        reads.append(vm_id)
        return engine[vm_id]

    alloc = CpusetAllocator(range(4), read)  # nothing remembered: a fresh agent
    vms = [_vm("a", 2), _vm("b", 1), _vm("c", 0.4)]
    # a fills 0 and 1, b fills 2, c is unpinned (0.1 on every core): core 3 is the freest.
    assert alloc.choose(1, vms) == frozenset({3})
    assert alloc.choose(1, vms) == frozenset({3})
    assert sorted(reads) == ["a", "b", "c"]  # each read once, then kept


def test_the_agent_pins_each_new_vm_and_a_new_agent_keeps_spreading(
    agent_settings,
    ssh_keypair: tuple[Path, str],  # type: ignore[no-untyped-def]
) -> None:
    from kumulus.agent.app import create_app

    runtime = FakeRuntime()
    body = {"username": "dev", "sshKey": ssh_keypair[1], "memory": "128m", "disk": "1g"}

    def create(client: TestClient, cpu: float) -> frozenset[int] | None:
        resp = client.post("/v1/vms", json={**body, "cpu": cpu})
        assert resp.status_code == 201, resp.text
        return runtime.inspect(resp.json()["vmId"]).spec.cpuset

    if len(host_cores()) < 2:
        pytest.skip("needs a host with two cores")
    with TestClient(create_app(agent_settings, runtime, collect_stats=False)) as client:
        client.headers["Authorization"] = f"Bearer {agent_settings.token_path.read_text().strip()}"
        first = create(client, 0.5)
        assert first is not None and len(first) == 1
    # A new agent over the same engine (an agent restart) puts the next VM elsewhere.
    with TestClient(create_app(agent_settings, runtime, collect_stats=False)) as client:
        client.headers["Authorization"] = f"Bearer {agent_settings.token_path.read_text().strip()}"
        second = create(client, 1)
        assert second is not None and len(second) == 1 and second != first
        assert create(client, 1.5) == first | second  # ceil(1.5) = 2 cores


def test_docker_cpuset_text_round_trips() -> None:
    assert parse_cpuset("0-2,5") == frozenset({0, 1, 2, 5})
    assert parse_cpuset("") is None and parse_cpuset(None) is None
    assert format_cpuset(frozenset({5, 0, 2})) == "0,2,5"
