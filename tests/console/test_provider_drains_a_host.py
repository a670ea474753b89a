"""The provider console drains and undrains a host, from the host list and from the host's
page: the button says which, the host's row and panel say whether it takes new VMs, and
another provider's host cannot be drained (404)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from kumulus.backend.models import Host
from tests.console.conftest import signup
from tests.console.test_provider_sees_host_isolation import _host


def _draining(server: TestClient, host_id: str) -> bool:
    with server.app.state.db.session() as db:  # type: ignore[attr-defined]
        host = db.get(Host, host_id)
        assert host is not None
        return bool(host.draining)


def test_drain_and_undrain(server: TestClient) -> None:
    csrf = signup(server, "prov@example.com", role="provider")
    host_id = _host(server, "prov@example.com", True, None)
    rows = server.get("/console/provider/hosts").text
    assert f'data-testid="drain-{host_id}">Drain<' in rows

    url = f"/console/provider/hosts/{host_id}/draining"
    from_list = {"HX-Request": "true", "HX-Target": "host-rows"}
    rows = server.post(url, data={"csrf": csrf, "draining": "true"}, headers=from_list).text
    assert _draining(server, host_id)
    assert '<span class="placement">draining</span>' in rows and ">Undrain<" in rows
    assert "<table" in rows and "<html" not in rows  # the rows fragment only

    from_page = {"HX-Request": "true", "HX-Target": "host-detail"}
    panel = server.post(url, data={"csrf": csrf, "draining": "false"}, headers=from_page).text
    assert not _draining(server, host_id)
    assert 'id="placement">Taken' in panel and ">Drain<" in panel and "<html" not in panel

    # Without script: a plain form post answers the host's page.
    page = server.post(url, data={"csrf": csrf, "draining": "true"}).text
    assert _draining(server, host_id) and 'id="placement">Draining' in page and "<html" in page

    server.cookies.clear()
    other_csrf = signup(server, "other@example.com", role="provider")
    refused = server.post(url, data={"csrf": other_csrf, "draining": "false"})
    assert refused.status_code == 404 and _draining(server, host_id)
