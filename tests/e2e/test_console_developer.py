"""The developer console in real Chromium against a running backend and a real agent: sign
up, add a key, create a VM and watch it turn running, copy the ssh line and log in with it,
stop / start / delete with confirmation; API tokens shown once."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import docker
import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic
from tests.e2e.agent_process import (
    AgentProcess,
    BackendProcess,
    link_wallet,
    make_host_key,
    register_agent,
    remove_agent_vms,
)
from tests.e2e.browser import screenshot
from tests.e2e.test_marketplace import _account

pytestmark = pytest.mark.slow


def _provider_with_a_host(tmp_path: Path, backend: BackendProcess) -> AgentProcess:
    mnemonic = new_mnemonic()
    make_host_key(tmp_path / "agent")
    agent = AgentProcess(
        tmp_path / "agent",
        (23600, 23609),
        KUMULUS_AGENT_STATS_INTERVAL="1",
        KUMULUS_AGENT_CPU_CAPACITY="2",
        KUMULUS_AGENT_MEMORY_CAPACITY="4g",
        KUMULUS_AGENT_DISK_CAPACITY="40g",
    ).start()
    with httpx.Client(base_url=backend.url, timeout=60) as anon:
        prov = _account(anon, "host-owner@example.com", "provider")
        prov.put("/v1/provider/profile", json={"name": "Acme", "country": "FR", "region": "eu"})
        assert link_wallet(prov, keypair_from_mnemonic(mnemonic)).status_code == 200
        token = prov.post("/v1/provider/host-tokens").json()["token"]
        prov.close()
    out = register_agent(agent, backend.url, token, mnemonic)
    assert out.returncode == 0, out.stderr
    return agent


def _ssh_with(line: str, key: Path, command: str) -> subprocess.CompletedProcess[str]:
    """Run the console's ssh line as pasted, plus the key and non-interactive options."""
    argv = shlex.split(line)
    assert argv[0] == "ssh"
    options = [
        "-i",
        str(key),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "BatchMode=yes",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
    ]
    return subprocess.run(
        ["ssh", *options, *argv[1:], command],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_developer_console_end_to_end(
    chromium: Browser,
    docker_client: docker.DockerClient,
    tmp_path: Path,
    ssh_keypair: tuple[Path, str],
) -> None:
    backend = BackendProcess(tmp_path / "backend", KUMULUS_BACKEND_HEARTBEAT_TTL="5").start()
    agent = _provider_with_a_host(tmp_path, backend)
    context = chromium.new_context(base_url=backend.url, viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=backend.url)
    page: Page = context.new_page()
    try:
        # Sign up: a bad password first, answered next to the field.
        page.goto("/console/signup")
        page.get_by_label("Email", exact=True).fill("dev@example.com")
        page.locator("#f-password").fill("short")
        page.get_by_role("button", name="Create account").click()
        expect(page.locator("#e-password")).to_contain_text("at least 10 characters")
        screenshot(page, "signup-error")
        page.locator("#f-password").fill("a long password")
        page.get_by_role("button", name="Create account").click()
        expect(page).to_have_url(re.compile("/console/keys$"))

        # SSH key: garbage is refused next to the field, the real key is added.
        page.locator("#f-name").fill("laptop")
        page.locator("#f-public_key").fill("not a key")
        page.get_by_role("button", name="Add key").click()
        expect(page.locator("#e-public_key")).to_be_visible()
        page.locator("#f-public_key").fill(ssh_keypair[1])
        page.get_by_role("button", name="Add key").click()
        expect(page.get_by_role("status")).to_contain_text("added")
        expect(page.locator("td code").first).to_contain_text("SHA256:")
        screenshot(page, "developer-keys")

        # Create a VM: a preset, a live price, then the VM page turns running.
        page.get_by_role("link", name="Create VM").click()
        page.get_by_role("radio", name=re.compile("^Nano")).check()
        page.locator("#f-username").fill("alice")
        expect(page.locator("#quote")).to_contain_text("per hour while running")
        page.get_by_label("vCPUs", exact=True).fill("8")
        page.get_by_label("vCPUs", exact=True).dispatch_event("change")
        expect(page.locator("#quote")).to_contain_text("no provider fits")
        page.get_by_label("vCPUs", exact=True).fill("0.5")
        page.locator("#f-memory").fill("512m")
        page.locator("#f-disk").fill("2g")
        page.get_by_label("vCPUs", exact=True).dispatch_event("change")
        expect(page.locator("#quote")).to_contain_text("UNIT")
        screenshot(page, "developer-create-vm")
        page.get_by_role("button", name="Create VM").click()
        expect(page).to_have_url(re.compile(r"/console/vms/[0-9a-f]{16}$"), timeout=60_000)
        expect(page.locator(".state").first).to_have_text("running", timeout=30_000)
        screenshot(page, "developer-vm")

        # Copy the ssh line with the button and log in with exactly that line.
        page.get_by_role("button", name="Copy").click()
        expect(page.locator("#copy-ssh-status")).to_have_text("Copied")
        copied = page.evaluate("navigator.clipboard.readText()")
        assert copied.startswith("ssh -p ") and "alice@" in copied
        out = _ssh_with(copied, ssh_keypair[0], "whoami")
        assert out.stdout.strip() == "alice", out.stderr

        # Stop with confirmation: dismissing keeps it running, accepting stops it.
        page.once("dialog", lambda d: d.dismiss())
        page.get_by_role("button", name="Stop").click()
        expect(page.locator(".state").first).to_have_text("running")
        page.once("dialog", lambda d: d.accept())
        page.get_by_role("button", name="Stop").click()
        expect(page.locator(".state").first).to_have_text("stopped", timeout=30_000)
        assert _ssh_with(copied, ssh_keypair[0], "true").returncode != 0
        page.get_by_role("button", name="Start").click()
        expect(page.locator(".state").first).to_have_text("running", timeout=30_000)
        assert _ssh_with(copied, ssh_keypair[0], "true").returncode == 0
        page.get_by_role("button", name="Show the last 200 lines").click()
        expect(page.locator("#logs pre")).to_contain_text("Server listening")

        page.goto("/console/vms")
        expect(page.locator("#vm-list")).to_contain_text("running")
        screenshot(page, "developer-vms")

        vm_id = page.locator("#vm-list a").first.get_attribute("href").rsplit("/", 1)[1]
        page.goto(f"/console/vms/{vm_id}")
        page.once("dialog", lambda d: d.accept())
        page.get_by_role("button", name="Delete").click()
        expect(page).to_have_url(re.compile("/console/vms$"), timeout=30_000)
        expect(page.locator("#vm-list")).to_contain_text("No VM yet")
        label = {"label": f"io.kumulus.vm.idempotency_key={vm_id}"}
        assert docker_client.containers.list(all=True, filters=label) == []

        # Usage: the sign-up credit, and the VM's charges for the seconds it ran (per second,
        # stopped time at the disk-only price), each with its VM.
        page.get_by_role("link", name="Usage").click()
        expect(page.locator("table").last).to_contain_text("usage")
        expect(page.locator("table").last).to_contain_text(vm_id)
        balance = page.locator("#balance").inner_text()
        assert balance.endswith("UNIT") and balance != "10 UNIT"
        screenshot(page, "developer-usage")

        # API token: shown once, works with the API, gone from the page after a reload.
        page.get_by_role("link", name="Account").click()
        page.locator("#f-name").fill("ci")
        page.get_by_role("button", name="Create token").click()
        token = page.locator("#new-token").inner_text()
        screenshot(page, "developer-account")
        me = httpx.get(f"{backend.url}/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert me.json()["email"] == "dev@example.com"
        page.reload()
        assert token not in page.content()

        # A phone-sized screen still shows the VM list readably.
        page.set_viewport_size({"width": 390, "height": 844})
        page.goto("/console/vms")
        screenshot(page, "developer-vms-phone")
        page.get_by_role("button", name="Log out").click()
        expect(page).to_have_url(re.compile("/console/login$"))
    finally:
        context.close()
        agent.stop()
        remove_agent_vms(docker_client, agent.state_dir)
        backend.stop()
