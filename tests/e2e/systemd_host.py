"""A fresh Debian 12 host with systemd as PID 1, in a container on the shared engine: where
provider-setup.sh's systemd path (units, restart on failure, boot start, lxcfs) runs for real
on machines that have no systemd themselves.

The root filesystem is debootstrapped from Debian's archive once per machine and kept as an
image tagged by a hash of its recipe; apt's and pip's downloads are kept in two named volumes,
so later runs fetch only what changed. The container runs on its own bridge network: never
`--network host`, since the dockerd inside it would then program the host's own bridges and
iptables. Whatever the host can reach (the backend on the bridge's gateway address, Debian,
PyPI) the container reaches through that bridge."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
from docker.models.containers import Container
from docker.models.networks import Network

from kumulus.agent.images import DEBIAN_KEYRING

REPOSITORY = "kumulus-test/systemd-host"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# What a minimal Debian server has; provider-setup.sh installs everything else itself.
PACKAGES = "systemd,systemd-sysv,dbus,iproute2,procps,kmod,ca-certificates"
APT_CACHE = "kumulus-test-systemd-apt"
PIP_CACHE = "kumulus-test-systemd-pip"
SHARED = "/mnt/kumulus-test"  # read-only: the script, the VM image, the mnemonic
# The egress CAs this machine trusts (a TLS-inspecting proxy, for one) are trusted inside too.
LOCAL_CAS = Path("/usr/local/share/ca-certificates")

# PID 1 of the container. A user-namespace-remapped engine stores the image's files owned by
# uid/gid + N, and --userns=host shows them raw: setuid binaries (umount, su) would then run
# as uid N, not root. So the first boot shifts owners back (restoring the setuid bits chown
# clears), then becomes systemd.
BOOT = r"""#!/bin/sh
shift=$(stat -c %u /etc/passwd)
if [ "$shift" -ne 0 ] && [ ! -e /etc/.owners-unshifted ]; then
  find / -xdev \( -uid +$((shift - 1)) -o -gid +$((shift - 1)) \) -print0 \
    | SHIFT=$shift perl -MPOSIX -0 -ne '
    chomp; my $n = $ENV{SHIFT};
    my @s = lstat $_ or next;
    my ($u, $g) = ($s[4], $s[5]);
    $u -= $n if $u >= $n && $u < $n + 65536;
    $g -= $n if $g >= $n && $g < $n + 65536;
    POSIX::lchown($u, $g, $_) or die "lchown $_: $!";
    -l _ or chmod($s[2] & 07777, $_) or die "chmod $_: $!";' && touch /etc/.owners-unshifted
fi
exec /lib/systemd/systemd
"""


def _recipe() -> str:
    cas = sorted(LOCAL_CAS.glob("*.crt")) if LOCAL_CAS.is_dir() else []
    parts = [SUITE, MIRROR, PACKAGES, BOOT, *(p.name + p.read_text() for p in cas)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


def ensure_image(client: docker.DockerClient) -> str:
    """The systemd host image for the current recipe: built (about a minute) unless present.
    Older builds of the recipe are removed. Concurrent callers build it once."""
    tag = f"{REPOSITORY}:{_recipe()}"
    with open("/tmp/kumulus-systemd-host.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.get(tag)
            return tag
        _build(client, tag)
        for image in client.images.list(name=REPOSITORY):
            if tag not in image.tags:
                with contextlib.suppress(docker.errors.APIError):
                    client.images.remove(image.id, force=True)
    return tag


def prebuild() -> None:
    """ensure_image in a background thread, so that on a fresh machine the build overlaps the
    tests before the one that needs it (which waits on ensure_image's lock). A failure here is
    left to that test's own call, which builds again and reports it."""

    def build() -> None:
        with contextlib.suppress(Exception):
            ensure_image(docker.from_env())

    threading.Thread(target=build, name="systemd-host-image").start()


def _build(client: docker.DockerClient, tag: str) -> None:
    debootstrap = shutil.which("debootstrap")
    assert debootstrap, "debootstrap is needed to build the systemd host (apt-get install it)"
    with tempfile.TemporaryDirectory(prefix="kumulus-systemd-host-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        subprocess.run(
            [
                debootstrap, "--variant=minbase", f"--keyring={DEBIAN_KEYRING}",
                "--force-check-gpg", f"--include={PACKAGES}", SUITE, str(rootfs), MIRROR,
            ],
            check=True, capture_output=True, timeout=900,
        )  # fmt: skip
        for ca in sorted(LOCAL_CAS.glob("*.crt")) if LOCAL_CAS.is_dir() else []:
            shutil.copyfile(ca, rootfs / "usr/local/share/ca-certificates" / ca.name)
        subprocess.run(
            ["chroot", str(rootfs), "update-ca-certificates"], check=True, capture_output=True
        )
        # pip's own CA bundle would not know a local CA: it uses the system's, as apt does.
        (rootfs / "etc/pip.conf").write_text(
            "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n"
        )
        boot = rootfs / "usr/local/sbin/boot"
        boot.write_text(BOOT)
        boot.chmod(0o755)
        # A machine-id made at first boot, and the resolver and name Docker gives.
        (rootfs / "etc/machine-id").write_text("")
        for name in ("etc/resolv.conf", "etc/hostname"):
            (rootfs / name).unlink(missing_ok=True)
        for item in (rootfs / "var/cache/apt/archives").glob("*.deb"):
            item.unlink()
        tarball = Path(tmp) / "rootfs.tar"
        subprocess.run(
            ["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-cf", str(tarball), "."],
            check=True,
        )
        repository, version = tag.rsplit(":", 1)
        client.api.import_image_from_file(
            str(tarball),
            repository=repository,
            tag=version,
            changes=["ENV container=docker", 'CMD ["/usr/local/sbin/boot"]'],
        )


class SystemdHost:
    """One running container with systemd as PID 1 (see the module docstring)."""

    def __init__(self, container: Container, network: Network) -> None:
        self.container = container
        self.network = network
        container.reload()
        settings = container.attrs["NetworkSettings"]["Networks"][network.name]
        self.ip: str = settings["IPAddress"]
        network.reload()
        self.gateway: str = network.attrs["IPAM"]["Config"][0]["Gateway"]

    def run(
        self, *command: str, timeout: float = 60, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """`command` inside, as root (docker exec), with its output as text."""
        return subprocess.run(
            ["docker", "exec", self.container.id, *command],
            capture_output=True, text=True, timeout=timeout, check=check,
        )  # fmt: skip

    def sh(self, script: str, timeout: float = 60) -> str:
        """A shell snippet inside; its stdout (stripped). Fails the test when it fails."""
        done = self.run("bash", "-c", script, timeout=timeout)
        assert done.returncode == 0, f"{script!r}: {done.returncode} {done.stderr[-2000:]}"
        return done.stdout.strip()

    def wait_booted(self, timeout: float = 120) -> str:
        """Wait until systemd finished booting; its state (`running` or `degraded`)."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            # Fails while PID 1 is not systemd yet (the first boot's owner fix).
            done = self.run("systemctl", "is-system-running", "--wait", timeout=timeout)
            state = done.stdout.strip()
            if state in ("running", "degraded"):
                return state
            time.sleep(0.5)
        raise AssertionError(f"systemd did not finish booting: {state!r}")

    def reboot(self) -> None:
        """A clean reboot: systemd stops every unit, then boots again from the same disk."""
        self.container.restart(timeout=60)
        self.wait_booted()

    def unit(self, name: str, *props: str) -> dict[str, str]:
        """`systemctl show` properties of a unit."""
        out = self.sh(f"systemctl show {name} " + " ".join(f"-p {p}" for p in props))
        return dict(line.split("=", 1) for line in out.splitlines())

    def journal(self, unit: str, lines: int = 60) -> str:
        return self.run("journalctl", "-u", unit, "-n", str(lines), "--no-pager").stdout


@contextlib.contextmanager
def systemd_host(client: docker.DockerClient, shared: Path) -> Iterator[SystemdHost]:
    """A booted systemd host on a bridge of its own; `shared` appears at SHARED (read-only).
    Removed afterwards, with everything its own dockerd made."""
    image = ensure_image(client)
    name = f"kumulus-systemd-{uuid.uuid4().hex[:8]}"
    network = client.networks.create(name, driver="bridge")
    container: Container | None = None
    try:
        # The docker CLI: the SDK has no way to say systempaths=unconfined.
        run = [
            "docker", "run", "--detach", "--name", name, "--hostname", "provider-host",
            "--network", network.name,
            # As checked on this machine: --privileged fails (the bounding set lacks
            # CAP_SYS_RESOURCE); the host's user namespace for the dockerd inside, the cgroup
            # tree for systemd, /dev/fuse for lxcfs, and no masked /proc paths, without which
            # no container inside can mount its own /proc.
            "--userns=host", "--cgroupns=host", "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
            "--security-opt", "seccomp=unconfined", "--security-opt", "systempaths=unconfined",
            "--device", "/dev/fuse", "--tmpfs", "/run", "--tmpfs", "/run/lock",
            "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "-v", f"{shared}:{SHARED}:ro",
            "-v", f"{APT_CACHE}:/var/cache/apt/archives", "-v", f"{PIP_CACHE}:/root/.cache/pip",
            "--stop-signal", "SIGRTMIN+3", image,
        ]  # fmt: skip
        started = subprocess.run(run, capture_output=True, text=True, check=False, timeout=120)
        assert started.returncode == 0, started.stderr
        container = client.containers.get(started.stdout.strip())
        host = SystemdHost(container, network)
        host.wait_booted()
        assert host.sh("stat -c %u:%g /usr/bin/umount") == "0:0", "file owners not unshifted"
        yield host
    finally:
        if container is not None:
            container.remove(force=True, v=True)
        network.remove()
