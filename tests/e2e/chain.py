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
SPEC = Path(
    os.environ.get(
        "KUMULUS_CHAIN_SPEC", REPO.parent / "shared" / "chain" / "parachain-template-dev.raw.json"
    )
)
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
