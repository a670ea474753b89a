"""Every list answers {"items", "next"}: following `next` gives each item once, in order."""

from __future__ import annotations

import subprocess
from pathlib import Path

from fastapi.testclient import TestClient

from tests.backend.conftest import Actor


def _key(tmp_path: Path, i: int) -> str:
    path = tmp_path / f"k{i}"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


def test_following_next_lists_everything_once(
    backend: TestClient, developer: Actor, tmp_path: Path
) -> None:
    ids = []
    for i in range(5):
        resp = backend.post(
            "/v1/ssh-keys",
            headers=developer.headers,
            json={"name": f"k{i}", "publicKey": _key(tmp_path, i)},
        )
        ids.append(resp.json()["id"])
    seen: list[int] = []
    after = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if after:
            params["after"] = after
        page = backend.get("/v1/ssh-keys", headers=developer.headers, params=params).json()
        assert set(page) == {"items", "next"}
        assert len(page["items"]) <= 2
        seen += [k["id"] for k in page["items"]]
        pages += 1
        after = page["next"]
        if after is None:
            break
    assert seen == ids and pages == 3


def test_newest_first_lists_page_backwards(backend: TestClient, developer: Actor) -> None:
    for i in range(3):
        backend.post("/v1/tokens", headers=developer.headers, json={"name": f"t{i}"})
    first = backend.get("/v1/billing/entries", headers=developer.headers, params={"limit": 1})
    assert first.status_code == 200 and len(first.json()["items"]) == 1  # the sign-up credit
    assert first.json()["next"] is None
    tokens = backend.get("/v1/tokens", headers=developer.headers, params={"limit": 3}).json()
    assert len(tokens["items"]) == 3 and tokens["next"] is not None  # login token + 3


def test_a_forged_cursor_is_422(backend: TestClient, developer: Actor) -> None:
    for bad in ["bm9wZQ", "W10", "WyJhIiwiYiJd", "x" * 600, "$$$"]:
        resp = backend.get("/v1/vms", headers=developer.headers, params={"after": bad})
        assert resp.status_code == 422, (bad, resp.text)
        assert resp.json()["code"] == "invalid"


def test_timestamps_are_rfc3339_with_offset(backend: TestClient, developer: Actor) -> None:
    token = backend.get("/v1/tokens", headers=developer.headers).json()["items"][0]
    assert token["createdAt"].endswith(("Z", "+00:00")), token["createdAt"]
    entry = backend.get("/v1/billing", headers=developer.headers).json()["entries"][0]
    assert entry["createdAt"].endswith(("Z", "+00:00"))
