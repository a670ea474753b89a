"""A fresh chopsticks chain per test session, from ../shared/chain's raw dev spec."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from substrateinterface import Keypair

from kumulus.chain.client import ChainClient
from kumulus.chain.devnode import DevNode, DevNodeError
from tests.e2e.agent_process import free_port

REPO = Path(__file__).resolve().parents[2]
SPEC_NAME = "parachain-template-dev.raw.json"


def _find_spec() -> Path:
    """$KUMULUS_CHAIN_SPEC, else ../shared/chain/ next to the checkout (or next to any of
    its parents, for clones made elsewhere), else /work/shared/chain/."""
    if os.environ.get("KUMULUS_CHAIN_SPEC"):
        return Path(os.environ["KUMULUS_CHAIN_SPEC"])
    for base in [REPO, *REPO.parents, Path("/work/repo")]:
        candidate = base.parent / "shared" / "chain" / SPEC_NAME
        if candidate.is_file():
            return candidate
    return REPO.parent / "shared" / "chain" / SPEC_NAME


SPEC = _find_spec()
UNIT = 10**12


@pytest.fixture(scope="session")
def dev_chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevNode]:
    try:
        node = DevNode(SPEC, free_port(), tmp_path_factory.mktemp("chain") / "chopsticks.log")
        node.start()
    except DevNodeError as exc:
        if os.environ.get("KUMULUS_E2E_REQUIRED"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    yield node
    node.stop()


def fund(node: DevNode, address: str, amount: int) -> None:
    """Give `address` tokens from //Alice (funded at genesis)."""
    chain = ChainClient(node.url)
    try:
        chain.transfer(Keypair.create_from_uri("//Alice", ss58_format=42), address, amount)
    finally:
        chain.close()
