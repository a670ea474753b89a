"""`vm create` shows its stages (plain lines off a terminal) and sends an Idempotency-Key;
`vm ls | show | logs | stop | start | rm` print people's text and, with --json, the API's
VM fields; `vm logs` returns an `until` marker, and `since` it gives only later lines
(what --follow polls with)."""

from __future__ import annotations

import json

from tests.cli.conftest import Cli
from tests.fuzz_platform import Platform


def test_create_show_logs_stop_start_rm(developer: Cli, live: Platform) -> None:
    made = developer("vm", "create", "--username", "dev", "--memory", "512m", "--disk", "2g")
    assert made.returncode == 0, made.stderr
    lines = made.stdout.splitlines()
    assert lines[0].startswith("price: ") and "per hour while running" in lines[0]
    assert lines[1].startswith("VM ") and f"placed on host {live.host_id}" in lines[1]
    assert "  running" in lines and lines[-1].startswith("ssh -p ")
    vm_id = lines[1].split()[1]

    shown = developer.json("vm", "show", vm_id)
    assert shown["id"] == vm_id and shown["actualState"] == "running"
    assert shown["hostId"] == live.host_id and "sshPort" in shown
    assert f"id:        {vm_id}" in developer("vm", "show", vm_id).stdout
    assert vm_id in {v["id"] for v in developer.json("vm", "ls")}
    assert vm_id in developer("vm", "ls").stdout

    first = developer.json("vm", "logs", vm_id)
    assert "sshd started" in first["logs"] and first["until"]
    agent_vm = next(iter(live.runtime.vms))  # the only VM on this fake host made so far
    live.runtime.say(agent_vm, "hello from the VM")
    since = developer.json("vm", "logs", vm_id)  # all of it again without a marker
    assert since["logs"].endswith("hello from the VM\n") and since["until"] > first["until"]
    assert developer("vm", "logs", vm_id).stdout.endswith("hello from the VM\n")

    stopped = developer.json("vm", "stop", vm_id)
    assert stopped["actualState"] == "stopped"
    assert developer("vm", "start", vm_id).stdout.strip() == f"VM {vm_id}: running"
    gone = developer("vm", "rm", vm_id, "--json")
    assert gone.returncode == 0 and json.loads(gone.stdout) == {"id": vm_id, "deleted": True}


def test_create_no_wait_json_returns_the_vm_at_once(developer: Cli) -> None:
    out = developer("vm", "create", "--username", "dev", "--memory", "512m", "--disk", "2g",
                    "--no-wait", "--json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    vm = json.loads(out.stdout)  # stdout is the VM alone; the stages went to stderr
    assert vm["actualState"] in ("pending", "starting", "running") and "placed on" in out.stderr
    assert developer("vm", "rm", vm["id"]).returncode == 0


def test_logs_since_gives_only_later_lines(developer: Cli, live: Platform) -> None:
    import httpx

    out = developer("vm", "create", "--username", "dev", "--memory", "512m", "--disk", "2g",
                    "--json")  # fmt: skip
    vm = json.loads(out.stdout)
    with httpx.Client(base_url=live.backend_url, headers=live.developer) as http:
        first = http.get(f"/v1/vms/{vm['id']}/logs").json()
        again = http.get(f"/v1/vms/{vm['id']}/logs", params={"since": first["until"]}).json()
        assert again["logs"] == "" and again["until"] == first["until"]
        agent_vm = next(v for v in live.runtime.vms if v not in _seen(live, vm["id"]))
        live.runtime.say(agent_vm, "later")
        later = http.get(f"/v1/vms/{vm['id']}/logs", params={"since": first["until"]}).json()
        assert later["logs"] == "later\n" and later["until"] > first["until"]
        bad = http.get(f"/v1/vms/{vm['id']}/logs", params={"since": "yesterday"})
        assert bad.status_code == 422
    developer("vm", "rm", vm["id"])


def _seen(live: Platform, vm_id: str) -> set[str]:
    # Agent VM ids other than the one this test made: those with console lines already.
    return {v for v, lines in live.runtime.console.items() if len(lines) > 1}
