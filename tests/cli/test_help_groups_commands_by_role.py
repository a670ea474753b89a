"""`kumulus --help` lists commands by who uses them: developer, provider, operator."""

from __future__ import annotations

from pathlib import Path

from tests.cli_runner import run_cli


def test_help_has_the_three_panels_in_order(tmp_path: Path) -> None:
    out = run_cli(tmp_path, "--help", extra_env={"COLUMNS": "120"})
    assert out.returncode == 0
    text = out.stdout
    dev, prov, op = (text.index(p) for p in ("Developer:", "Provider:", "Operator:"))
    assert dev < prov < op
    developer, provider, operator = text[dev:prov], text[prov:op], text[op:]
    assert "│ vm " in developer and "│ token " in developer and "│ provider " not in developer
    assert "│ provider " in provider and "│ agent " in provider
    assert "│ backend " in operator and "│ up " in operator
    assert "--install-completion" in text
