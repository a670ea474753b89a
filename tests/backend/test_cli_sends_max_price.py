"""`kumulus vm create` shows the quoted price and sends maxPricePerHour with every create:
the quote's maximum (price plus the backend's tolerance), or --max-price when given."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.api_bodies import key_body, vm_body
from tests.cli_runner import run_cli
from tests.json_server import JsonServer

VM = vm_body(pricePerHour="0.0255 UNIT")
QUOTE = {"pricePerHour": "0.0255", "hostId": "h1", "maxPricePerHour": "0.02805", "symbol": "UNIT"}


def _backend(method: str, target: str) -> tuple[int, Any]:
    path = target.split("?", 1)[0]
    if method == "GET" and path == "/v1/ssh-keys":
        return 200, {"items": [key_body()], "next": None}
    if method == "POST" and path == "/v1/vms/quote":
        return 200, QUOTE
    if method == "POST" and path == "/v1/vms":
        return 201, VM
    return 404, {"detail": "no such thing", "code": "not_found"}


def _home(tmp_path: Path, url: str) -> Path:
    (tmp_path / "kumulus").mkdir()
    (tmp_path / "kumulus" / "cli.json").write_text(json.dumps({"backend": url, "token": "t"}))
    return tmp_path


def _creates(server: JsonServer) -> list[Any]:
    return [body for method, path, body in server.requests if (method, path) == ("POST", "/v1/vms")]


def test_create_sends_the_quoted_maximum(tmp_path: Path) -> None:
    with JsonServer(_backend) as server:
        home = _home(tmp_path, server.url)
        out = run_cli(home, "vm", "create", "--username", "dev", "--cpu", "1.5", "--memory", "3g")
        assert out.returncode == 0, out.stderr
        assert "price: 0.0255 UNIT per hour" in out.stdout
        assert "at most 0.02805 UNIT" in out.stdout
        quotes = [b for m, p, b in server.requests if (m, p) == ("POST", "/v1/vms/quote")]
        assert quotes == [
            {"cpu": 1.5, "memory": 3 << 30, "disk": 10 << 30, "allowWeakIsolation": False}
        ]
        (create,) = _creates(server)
        assert create["maxPricePerHour"] == "0.02805"
        assert (create["cpu"], create["memory"]) == (1.5, 3 << 30)


def test_max_price_overrides_the_quote(tmp_path: Path) -> None:
    with JsonServer(_backend) as server:
        home = _home(tmp_path, server.url)
        out = run_cli(home, "vm", "create", "--username", "dev", "--max-price", "0.05")
        assert out.returncode == 0, out.stderr
        assert "at most 0.05 UNIT" in out.stdout
        (create,) = _creates(server)
        assert create["maxPricePerHour"] == "0.05"
