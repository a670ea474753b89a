"""The backend refuses a `since` log marker that is no time (422) before asking any host:
it used to pass it on, and the host's Docker driver failed on it (a 502 here)."""

from fastapi.testclient import TestClient

from tests.backend.conftest import Actor


def test_backend_refuses_a_marker_that_is_no_time(backend: TestClient, developer: Actor) -> None:
    for marker in ("2024-13-45T99:99:99Z", "1970-01-01T00:00:00Z"):
        resp = backend.get("/v1/vms/abc/logs", params={"since": marker}, headers=developer.headers)
        assert resp.status_code == 422, resp.text
        assert "since" in resp.text
