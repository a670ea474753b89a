"""How much of its disk quota a VM has used, read from the kernel: no command, no shell.

A VM's disk is a btrfs subvolume whose quota group the kernel accounts (simple quotas: what
the VM wrote; classic ones: what it references) and publishes in sysfs, as
`/sys/fs/btrfs/<fsid>/qgroups/0_<subvolume id>/referenced` (Linux >= 5.9). The subvolume's id
and its filesystem's id come from two read-only ioctls on the subvolume's directory. `df`
inside a VM cannot show any of this: it reports the whole data-root filesystem.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import uuid
from pathlib import Path

log = logging.getLogger(__name__)

SYSFS_BTRFS = Path("/sys/fs/btrfs")
_MAGIC = 0x94  # BTRFS_IOCTL_MAGIC
_FIRST_FREE_OBJECTID = 256  # a subvolume's root directory
# include/uapi/linux/btrfs.h: struct btrfs_ioctl_ino_lookup_args { __u64 treeid; __u64
# objectid; char name[4080]; } (_IOWR 18) and struct btrfs_ioctl_fs_info_args, 1024 bytes,
# whose fsid (16 bytes) follows max_id and num_devices (_IOR 31).
_INO_LOOKUP_SIZE, _FS_INFO_SIZE = 4096, 1024
BTRFS_IOC_INO_LOOKUP = (3 << 30) | (_INO_LOOKUP_SIZE << 16) | (_MAGIC << 8) | 18
BTRFS_IOC_FS_INFO = (2 << 30) | (_FS_INFO_SIZE << 16) | (_MAGIC << 8) | 31


def subvolume_ids(path: Path) -> tuple[str, int]:
    """(filesystem UUID, subvolume id) of the btrfs subvolume at `path`; OSError if it is
    not one."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        lookup = bytearray(struct.pack("=QQ", 0, _FIRST_FREE_OBJECTID).ljust(_INO_LOOKUP_SIZE))
        fcntl.ioctl(fd, BTRFS_IOC_INO_LOOKUP, lookup)
        info = bytearray(_FS_INFO_SIZE)
        fcntl.ioctl(fd, BTRFS_IOC_FS_INFO, info)
    finally:
        os.close(fd)
    (subvolume_id,) = struct.unpack_from("=Q", lookup)
    return str(uuid.UUID(bytes=bytes(info[16:32]))), int(subvolume_id)


def used_bytes(path: Path, sysfs: Path = SYSFS_BTRFS) -> int | None:
    """Bytes the subvolume at `path` has used of its quota, or None when unknown (not
    btrfs, quotas off, or a kernel without qgroups in sysfs)."""
    try:
        fsid, subvolume_id = subvolume_ids(path)
        qgroups = sysfs / fsid / "qgroups"
        # Classic qgroups marked inconsistent stop counting (Linux >= 6.5 skips accounting
        # until a rescan): their numbers are stale, so none is better than a wrong one.
        if (qgroups / "inconsistent").read_text().strip() == "1":
            return None
        text = (qgroups / f"0_{subvolume_id}" / "referenced").read_text()
    except OSError:
        return None
    value = text.strip()
    return int(value) if value.isdigit() else None
