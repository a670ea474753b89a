"""The agent package a provider host installs, built from the code this backend runs: the
installed `kumulus` package's files plus a pyproject.toml made from its metadata. So a host
set up from this backend runs the same version, with no package index of our own."""

from __future__ import annotations

import io
import tarfile
import time
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


@lru_cache(maxsize=1)
def package_tarball() -> bytes:
    """kumulus-<version>.tar.gz (an sdist pip can install)."""
    root = Path(str(resources.files("kumulus")))
    top = f"kumulus-{__version__}"
    buffer = io.BytesIO()
    now = int(time.time())
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        pyproject = _pyproject().encode()
        info = tarfile.TarInfo(f"{top}/pyproject.toml")
        info.size, info.mtime, info.mode = len(pyproject), now, 0o644
        tar.addfile(info, io.BytesIO(pyproject))
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root)
            if path.is_dir() or _SKIP & set(rel.parts) or path.suffix == ".pyc":
                continue
            tar.add(path, arcname=f"{top}/src/kumulus/{rel}", recursive=False)
    return buffer.getvalue()
