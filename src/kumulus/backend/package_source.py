"""The agent package a provider host installs, built from the code this backend runs: the
installed `kumulus` package's files plus a pyproject.toml made from its metadata. So a host
set up from this backend runs the same version, with no package index of our own."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from functools import lru_cache
from importlib import metadata, resources
from pathlib import Path

from kumulus import __version__

_SKIP = {"__pycache__"}


def _pyproject() -> str:
    requires = [
        r for r in (metadata.requires("kumulus") or []) if "extra ==" not in r.replace('"', "")
    ]
    deps = "".join(f'  "{r}",\n' for r in requires)
    return (
        '[build-system]\nrequires = ["setuptools>=68", "wheel"]\n'
        'build-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "kumulus"\nversion = "{__version__}"\n'
        'requires-python = ">=3.11"\n'
        f"dependencies = [\n{deps}]\n\n"
        '[project.scripts]\nkumulus = "kumulus.cli:app"\n\n'
        '[tool.setuptools.packages.find]\nwhere = ["src"]\n\n'
        "[tool.setuptools.package-data]\n"
        '"*" = ["*", "*/*", "*/*/*"]\n'
    )


# Every entry's time: the archive depends on the code only, so every replica of a backend
# serves the same bytes and the setup script can carry their SHA-256.
_EPOCH = 315532800  # 1980-01-01, the earliest time zip-based tools accept


def _normalized(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime, info.uid, info.gid, info.uname, info.gname = _EPOCH, 0, 0, "", ""
    info.mode = 0o755 if info.mode & 0o100 else 0o644
    return info


@lru_cache(maxsize=1)
def package_tarball() -> bytes:
    """kumulus-<version>.tar.gz (an sdist pip can install), byte for byte the same for the
    same code (reproducible: fixed times, owners and modes, no gzip timestamp)."""
    root = Path(str(resources.files("kumulus")))
    top = f"kumulus-{__version__}"
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar,
    ):
        pyproject = _pyproject().encode()
        info = _normalized(tarfile.TarInfo(f"{top}/pyproject.toml"))
        info.size = len(pyproject)
        tar.addfile(info, io.BytesIO(pyproject))
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root)
            if path.is_dir() or _SKIP & set(rel.parts) or path.suffix == ".pyc":
                continue
            tar.add(path, arcname=f"{top}/src/kumulus/{rel}", recursive=False, filter=_normalized)
    return buffer.getvalue()


@lru_cache(maxsize=1)
def package_sha256() -> str:
    """Hex SHA-256 of package_tarball(): what the setup script checks before installing."""
    return hashlib.sha256(package_tarball()).hexdigest()
