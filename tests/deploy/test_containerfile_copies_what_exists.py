"""deploy/Containerfile cannot be built here (no registry to pull its base image from):
what can be checked without building is. Everything it COPYs from the build context exists
and is not excluded by .dockerignore, and its entry point is a real command."""

from __future__ import annotations

import fnmatch
import json
import shlex
from pathlib import Path

from typer.testing import CliRunner

from kumulus.cli import app

REPO = Path(__file__).parents[2]
CONTAINERFILE = REPO / "deploy" / "Containerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    joined = CONTAINERFILE.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in joined.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def _ignored(path: str) -> bool:
    patterns = [
        p.strip()
        for p in (REPO / ".dockerignore").read_text().splitlines()
        if p.strip() and not p.startswith("#")
    ]
    parts = Path(path).parts
    return any(
        fnmatch.fnmatch(path, p) or fnmatch.fnmatch(parts[0], p) or p.removeprefix("**/") in parts
        for p in patterns
    )


def test_every_copied_source_is_in_the_build_context() -> None:
    sources = []
    for instruction, args in _instructions():
        if instruction not in ("COPY", "ADD"):
            continue
        words = shlex.split(args)
        if any(w.startswith("--from") for w in words):
            continue
        sources += [w for w in words[:-1] if not w.startswith("--")]
    assert sources, "no COPY from the context: the test reads the file wrong"
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: not in the repository"
        assert not _ignored(source), f"COPY {source}: excluded by .dockerignore"


def test_the_entry_point_is_the_backend_command() -> None:
    (entrypoint,) = [args for instruction, args in _instructions() if instruction == "ENTRYPOINT"]
    argv = json.loads(entrypoint)
    assert argv[0] == "kumulus"
    result = CliRunner().invoke(app, [*argv[1:], "--help"])
    assert result.exit_code == 0, result.output


def test_the_stages_use_one_python() -> None:
    bases = {args.split()[0] for instruction, args in _instructions() if instruction == "FROM"}
    assert len(bases) == 1  # the virtual environment is copied from one stage to the other
