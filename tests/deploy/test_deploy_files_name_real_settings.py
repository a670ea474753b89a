"""Every KUMULUS_* variable the deployment files set is a setting the backend reads: the
settings ignore unknown names, so a misspelt one would be silently without effect."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import AliasChoices

from kumulus.config import BackendSettings

DEPLOY = Path(__file__).parents[2] / "deploy"


def _backend_names() -> set[str]:
    prefix = BackendSettings.model_config.get("env_prefix", "")
    names = set()
    for field, info in BackendSettings.model_fields.items():
        names.add(f"{prefix}{field}".upper())
        if isinstance(info.validation_alias, AliasChoices):
            names |= {str(a).upper() for a in info.validation_alias.choices}
    return names


def test_every_variable_in_deploy_is_a_backend_setting() -> None:
    known = _backend_names()
    used: dict[str, str] = {}
    for path in DEPLOY.rglob("*"):
        if path.is_file():
            for name in re.findall(r"\bKUMULUS_[A-Z0-9_]+", path.read_text()):
                used.setdefault(name, path.name)
    assert len(used) >= 8, used  # the files were read
    unknown = {name: where for name, where in used.items() if name not in known}
    assert unknown == {}
