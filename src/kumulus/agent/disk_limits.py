"""Keep VM disk limits in force on a btrfs engine, also across engine restarts.

Docker's btrfs driver sets a qgroup limit when it creates a container, and *disables quotas
when the daemon shuts down* (its Cleanup), which drops every limit; on the next create it
re-enables them in classic mode. Found here: after a dockerd restart, VMs wrote past their
size. So the agent, at start and then periodically, turns quotas back on (simple quotas when
the kernel has them) and re-applies each VM's limit from its labels. Commands are argument
lists for btrfs-progs; nothing here runs unless the engine's storage driver is btrfs.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

from kumulus.agent import disk_usage
from kumulus.agent.btrfs_quota import enable_simple_quota
from kumulus.agent.runtime import VMInfo

log = logging.getLogger(__name__)


class DiskLimits:
    def __init__(self, root_dir: str, storage_driver: str) -> None:
        self.root = Path(root_dir)
        self.home = self.root / "btrfs"
        self.storage_driver = storage_driver
        self.active = (
            storage_driver == "btrfs"
            and (self.home / "subvolumes").is_dir()
            and shutil.which("btrfs") is not None
        )

    def _btrfs(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["btrfs", *args], capture_output=True, text=True, check=False, timeout=120
        )

    def ensure_quota(self) -> bool:
        """Quotas on (simple if possible). True if they had to be turned back on."""
        if self._btrfs("qgroup", "show", str(self.home)).returncode == 0:
            return False
        try:
            enable_simple_quota(str(self.home))
            log.warning("btrfs quotas were off (engine restart?): simple quotas re-enabled")
        except OSError:
            self._btrfs("quota", "enable", str(self.home))
            self._btrfs("quota", "rescan", "-w", str(self.home))
            log.warning("btrfs quotas were off (engine restart?): classic quotas re-enabled")
        return True

    def used(self, container_id: str | None) -> int | None:
        """Bytes the container's disk has used of its quota, or None when unknown (another
        storage driver, quotas off)."""
        if self.storage_driver != "btrfs" or not container_id:
            return None
        path = self.subvolume(container_id)
        return None if path is None else disk_usage.used_bytes(path)

    def subvolume(self, container_id: str) -> Path | None:
        try:
            mount_id = (
                (self.root / "image" / "btrfs" / "layerdb" / "mounts" / container_id / "mount-id")
                .read_text()
                .strip()
            )
        except OSError:
            return None
        path = self.home / "subvolumes" / mount_id
        return path if path.is_dir() else None

    def current_limit(self, path: Path) -> int | None:
        """The subvolume's "max referenced" in bytes, or None (no limit / no quotas)."""
        res = self._btrfs("qgroup", "show", "-re", "--raw", "-f", str(path))
        if res.returncode != 0:
            return None
        rows = [line.split() for line in res.stdout.splitlines() if line.startswith("0/")]
        if not rows or len(rows[-1]) < 4 or not rows[-1][3].isdigit():
            return None
        return int(rows[-1][3])

    def reapply(self, vms: list[VMInfo]) -> int:
        """Set each VM's limit again (idempotent); return how many were set."""
        if not self.active:
            return 0
        self.ensure_quota()
        applied = 0
        for vm in vms:
            if vm.spec.disk is None or not vm.container_id:
                continue
            path = self.subvolume(vm.container_id)
            if path is None or self.current_limit(path) == vm.spec.disk:
                continue
            res = self._btrfs("qgroup", "limit", str(vm.spec.disk), str(path))
            if res.returncode == 0:
                applied += 1
            else:
                log.error(
                    "could not limit the disk of VM %s: %s", vm.spec.vm_id, res.stderr.strip()[:200]
                )
        return applied
