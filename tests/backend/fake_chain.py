"""A chain in memory for settlement tests: blocks with transfers, balances, nonces, and a
genesis hash; `restart()` gives a chain from the same genesis with fresh blocks (what a
development chain restarted from its spec looks like)."""

from __future__ import annotations

import secrets
from typing import Any, cast

from kumulus.chain.client import ChainClient, ChainError, Receipt, SignedExtrinsic, Transfer


class FakeChain:
    url = "ws://fake-chain"

    def __init__(self, genesis: str = "0x" + "11" * 32, blocks: int = 2) -> None:
        self.genesis = genesis
        self._tag = secrets.token_hex(4)  # block hashes differ between chain instances
        self.blocks: list[list[Transfer]] = [[] for _ in range(blocks + 1)]
        self.balances: dict[str, int] = {}
        self.nonces: dict[str, int] = {}
        self.sent: list[tuple[str, str, int]] = []  # (from, to, amount) of our transfers
        self.remarks: list[bytes] = []  # what `remark` put on chain
        # block -> (signer, extrinsic) of the transfers sent through `transfer`
        self.signed: dict[int, list[tuple[str, SignedExtrinsic]]] = {}

    def client(self) -> ChainClient:
        return cast(ChainClient, self)

    def restart(self) -> FakeChain:
        """The same genesis, blocks made again from scratch."""
        return FakeChain(self.genesis)

    # -- what ChainClient offers ------------------------------------------------------------

    def genesis_hash(self) -> str:
        return self.genesis

    def finalized_number(self) -> int:
        return len(self.blocks) - 1

    def block_hash(self, number: int) -> str | None:
        if number >= len(self.blocks):
            return None
        return f"0x{self._tag}{number:056x}"

    def transfers(self, number: int) -> list[Transfer]:
        return list(self.blocks[number])

    def same_account(self, a: str, b: str) -> bool:
        return a == b

    def nonce(self, address: str) -> int:
        return self.nonces.get(address, 0)

    def free_balance(self, address: str) -> int:
        return self.balances.get(address, 0)

    def existential_deposit(self) -> int:
        return 10

    def transfer_fee(self, keypair: Any, dest: str, amount: int) -> int:
        return 5

    def extrinsics_by(self, number: int, signer: str) -> list[SignedExtrinsic]:
        return [e for who, e in self.signed.get(number, []) if who == signer]

    def transfer(self, keypair: Any, dest: str, amount: int, nonce: int | None = None) -> Receipt:
        sender = str(keypair.ss58_address)
        self.balances[sender] = self.balances.get(sender, 0) - amount
        self.sent.append((sender, dest, amount))
        return self._signed(sender, self.pay(sender, dest, amount), dest, amount)

    def remark(self, keypair: Any, data: bytes, nonce: int | None = None) -> Receipt:
        """A block with the remark; a nonce already used is refused, as a node does."""
        sender = str(keypair.ss58_address)
        if nonce is not None and nonce < self.nonces.get(sender, 0):
            raise ChainError("the chain refused the transaction: outdated", retry=False)
        self.remarks.append(data)
        self.blocks.append([])
        return self._signed(sender, len(self.blocks) - 1, None, None)

    def _signed(self, sender: str, number: int, dest: str | None, amount: int | None) -> Receipt:
        """`sender`'s extrinsic in block `number`, with its next nonce (used up now)."""
        used = self.nonces.get(sender, 0)
        self.nonces[sender] = used + 1
        receipt = Receipt("0x" + secrets.token_hex(32), str(self.block_hash(number)), number, 0)
        self.signed.setdefault(number, []).append(
            (
                sender,
                SignedExtrinsic(
                    number, receipt.block_hash, receipt.extrinsic_hash, used, True, dest, amount
                ),
            )
        )
        return receipt

    # -- test helpers -----------------------------------------------------------------------

    def pay(self, sender: str, dest: str, amount: int) -> int:
        """A block with one transfer (balances of `dest` credited); returns its number."""
        number = len(self.blocks)
        self.blocks.append([])
        self.blocks[number].append(
            Transfer(number, str(self.block_hash(number)), 1, sender, dest, amount)
        )
        self.balances[dest] = self.balances.get(dest, 0) + amount
        return number

    def empty_blocks(self, count: int) -> None:
        self.blocks += [[] for _ in range(count)]
