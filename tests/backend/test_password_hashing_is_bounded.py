"""At most `password_hash_concurrency` argon2 hashes run at once per process (19 MiB
each); a log-in that finds no slot within `password_hash_wait` is answered 503 `busy`
with Retry-After at once, not queued."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from kumulus.backend import security
from tests.backend.limits_fixtures import client_of, login, settings_with, signup


def test_a_login_beyond_the_bound_is_refused_fast(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_with(tmp_path, password_hash_concurrency=1, password_hash_wait=0.2)
    with client_of(settings) as client:
        assert signup(client, "slow@example.com").status_code == 201
        hashing, finish = threading.Event(), threading.Event()
        real = security._hasher

        class SlowHasher:
            """argon2 that holds its slot until the test lets it finish."""

            def verify(self, *args: Any) -> Any:
                hashing.set()
                finish.wait(30)
                return real.verify(*args)

            def check_needs_rehash(self, password_hash: str) -> bool:
                return real.check_needs_rehash(password_hash)

        monkeypatch.setattr(security, "_hasher", SlowHasher())
        first: list[int] = []
        holder = threading.Thread(
            target=lambda: first.append(login(client, "slow@example.com").status_code)
        )
        holder.start()
        try:
            assert hashing.wait(30)
            started = time.monotonic()
            refused = login(client, "slow@example.com")
            assert time.monotonic() - started < 5
            assert refused.status_code == 503, refused.text
            assert refused.json()["code"] == "busy" and refused.json()["retry"] is True
            assert int(refused.headers["Retry-After"]) >= 1
        finally:
            finish.set()
            holder.join(30)
        assert first == [200]
        monkeypatch.setattr(security, "_hasher", real)
        assert login(client, "slow@example.com").status_code == 200  # the slot is back
