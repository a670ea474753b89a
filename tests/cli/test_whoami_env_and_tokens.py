"""KUMULUS_BACKEND and KUMULUS_TOKEN stand in for `kumulus login` (CI); `whoami`, `token
create | ls | revoke` and `logout` print people's text and, with --json, the API's."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import Cli
from tests.cli_runner import run_cli


def test_whoami_from_the_environment(developer: Cli) -> None:
    human = developer("whoami")
    assert human.returncode == 0, human.stderr
    assert "developer@fuzz.example.com" in human.stdout and developer.backend in human.stdout
    me = developer.json("whoami")
    assert me["email"] == "developer@fuzz.example.com" and me["role"] == "developer"


def test_tokens_are_made_listed_revoked_and_logout_revokes_its_own(
    developer: Cli, tmp_path: Path
) -> None:
    made = developer.json("token", "create", "ci")
    assert made["name"] == "ci" and made["token"].startswith(made["prefix"])
    plain = developer("token", "create", "ci2")
    assert plain.returncode == 0 and plain.stdout.strip().startswith("km")
    listed = developer.json("token", "ls")
    assert {"ci", "ci2"} <= {t["name"] for t in listed}
    assert "token" not in listed[0]  # never the secret again
    assert "PREFIX" in developer("token", "ls").stdout

    ci = Cli(tmp_path, developer.backend, made["token"])
    assert ci.json("whoami")["role"] == "developer"
    out = developer("token", "revoke", str(made["id"]))
    assert out.returncode == 0 and f"revoked token {made['id']}" in out.stdout
    assert ci("whoami").returncode == 6
    assert developer("token", "revoke", "999999").returncode == 3

    # logout: revokes the token it runs with and forgets the stored one.
    second = plain.stdout.strip()
    home = tmp_path / "cfg"
    (home / "kumulus").mkdir(parents=True)
    (home / "kumulus" / "cli.json").write_text(
        json.dumps({"backend": developer.backend, "token": second})
    )
    bye = run_cli(home, "logout", "--json")
    assert bye.returncode == 0, bye.stderr
    assert json.loads(bye.stdout) == {"revoked": True, "forgotten": True}
    assert not (home / "kumulus" / "cli.json").exists()
    assert Cli(tmp_path, developer.backend, second)("whoami").returncode == 6
