"""cpu, memory and disk limits are read back from inside the VM, and disk is really enforced."""

from pathlib import Path

from tests.e2e.conftest import ssh

# cgroup v1 and v2 paths, whichever the host has.
READ_LIMITS = (
    "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes;"
    "cat /sys/fs/cgroup/cpu.max 2>/dev/null || "
    "echo $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us);"
    "cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max"
)


def test_memory_cpu_and_pids_limits_read_back_inside(
    make_vm, ssh_keypair: tuple[Path, str]
) -> None:  # type: ignore[no-untyped-def]
    vm = make_vm(cpu=0.5, memory="384m", disk="2g")
    out = ssh(ssh_keypair[0], vm, READ_LIMITS)
    assert out.returncode == 0, out.stderr
    memory, cpu, pids = out.stdout.strip().split("\n")
    assert int(memory) == 384 * 1024 * 1024
    quota, period = (int(x) for x in cpu.split())
    assert quota / period == 0.5
    assert int(pids) == 512


def test_memory_limit_is_enforced(make_vm, ssh_keypair: tuple[Path, str]) -> None:  # type: ignore[no-untyped-def]
    vm = make_vm(memory="128m", disk="2g")
    # Allocating 300 MiB in a 128 MiB VM gets the process killed (no swap beyond the limit).
    out = ssh(
        ssh_keypair[0],
        vm,
        "python3 -c 'x=bytearray(300<<20)' 2>/dev/null && echo survived || "
        "(head -c 300M /dev/zero | tail >/dev/null && echo survived) || echo killed",
    )
    assert "killed" in out.stdout, out.stdout + out.stderr


def test_writing_past_the_disk_size_fails(make_vm, ssh_keypair: tuple[Path, str]) -> None:  # type: ignore[no-untyped-def]
    vm = make_vm(disk="1g")
    out = ssh(
        ssh_keypair[0],
        vm,
        "dd if=/dev/zero of=$HOME/fill bs=1M count=1500 2>&1; echo rc=$?; "
        "du -m $HOME/fill | cut -f1",
        timeout=120,
    )
    assert "rc=1" in out.stdout, out.stdout
    assert "Disk quota exceeded" in out.stdout or "No space left" in out.stdout
    written = int(out.stdout.strip().split("\n")[-1])
    # Simple quotas count what the VM wrote (not the shared image); btrfs reserves space for
    # writes in flight, so the refusal comes somewhat before the full 1g (seen: 876-1024 MiB).
    assert 600 <= written <= 1024
    # After freeing space the VM works again.
    assert ssh(ssh_keypair[0], vm, "rm $HOME/fill && echo ok > $HOME/after").returncode == 0
