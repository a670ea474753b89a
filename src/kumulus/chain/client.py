"""The few chain operations Kumulus needs, over substrate-interface (JSON-RPC)."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from substrateinterface import Keypair, SubstrateInterface
from substrateinterface.exceptions import SubstrateRequestException
from substrateinterface.utils.ss58 import ss58_decode


class ChainError(Exception):
    """The chain refused or could not be reached; `retry` says whether trying later may help."""

    def __init__(self, message: str, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


@dataclass(frozen=True)
class Receipt:
    extrinsic_hash: str
    block_hash: str
    block_number: int
    fee: int


@dataclass(frozen=True)
class Transfer:
    """A Balances.Transfer event in a finalized block."""

    block_number: int
    block_hash: str
    event_index: int
    sender: str
    dest: str
    amount: int


@dataclass(frozen=True)
class SignedExtrinsic:
    """An extrinsic by `signer` found in a block (to reconcile what was submitted); `dest`
    and `amount` are set when it is a Balances transfer."""

    block_number: int
    block_hash: str
    extrinsic_hash: str
    nonce: int
    success: bool
    dest: str | None = None
    amount: int | None = None


_F = TypeVar("_F", bound=Callable[..., Any])


def _chain_errors(method: _F) -> _F:
    """Reads raise ChainError (retryable) whatever went wrong underneath (RPC error,
    socket closed, timeout), so callers handle one exception type."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except ChainError:
            raise
        except Exception as exc:
            raise ChainError(f"chain read failed: {exc}") from exc

    return cast(_F, wrapper)


def _public_key(address: str) -> bytes:
    if address.startswith("0x"):
        return bytes.fromhex(address[2:])
    try:
        return bytes.fromhex(ss58_decode(address))
    except Exception as exc:
        raise ValueError(f"not an address: {address[:60]}") from exc


class ChainClient:
    """One connection to a Substrate node. Thread-safe (calls are serialised). It connects
    at its first call, and again at the next call after a connection could not be made
    (ChainError): a backend starts, serves and reports not ready (/readyz) while its chain
    node is away, instead of failing to start."""

    def __init__(self, url: str, ss58_format: int = 42) -> None:
        self.url = url
        self.ss58_format = ss58_format
        self._lock = threading.RLock()
        self._connected: SubstrateInterface | None = None

    @property
    def _api(self) -> SubstrateInterface:
        with self._lock:
            if self._connected is None:
                try:
                    # A bounded socket timeout: a node that never answers (or a transaction
                    # held back forever) becomes a retryable error instead of a hung thread.
                    self._connected = SubstrateInterface(
                        url=self.url, ss58_format=self.ss58_format, ws_options={"timeout": 120}
                    )
                except Exception as exc:
                    raise ChainError(f"cannot reach the chain at {self.url}: {exc}") from exc
            return self._connected

    def same_account(self, a: str, b: str) -> bool:
        """Whether two addresses (any ss58 prefix) are the same account."""
        try:
            return _public_key(a) == _public_key(b)
        except ValueError:
            return False

    def close(self) -> None:
        with self._lock:
            if self._connected is not None:
                self._connected.close()
                self._connected = None

    # -- reads ---------------------------------------------------------------------------

    @_chain_errors
    def free_balance(self, address: str) -> int:
        with self._lock:
            account = self._api.query("System", "Account", [address])
        return int(account.value["data"]["free"])

    @_chain_errors
    def nonce(self, address: str) -> int:
        with self._lock:
            return int(self._api.get_account_nonce(address))

    @_chain_errors
    def finalized_number(self) -> int:
        with self._lock:
            head = self._api.get_chain_finalised_head()
            return int(self._api.get_block_number(head))

    @_chain_errors
    def block_hash(self, number: int) -> str | None:
        """The hash of block `number` of the canonical chain; None beyond the chain's head."""
        with self._lock:
            found = self._api.get_block_hash(number)
        return None if found is None else str(found)

    @_chain_errors
    def genesis_hash(self) -> str:
        """The chain's identity: the hash of its block 0."""
        with self._lock:
            return str(self._api.get_block_hash(0))

    @_chain_errors
    def existential_deposit(self) -> int:
        with self._lock:
            return int(self._api.get_constant("Balances", "ExistentialDeposit").value)

    @_chain_errors
    def transfer_fee(self, keypair: Keypair, dest: str, amount: int) -> int:
        """What `transfer` of `amount` from `keypair` would pay in fees (an estimate)."""
        with self._lock:
            call = self._api.compose_call(
                "Balances", "transfer_keep_alive", {"dest": dest, "value": amount}
            )
            info = self._api.get_payment_info(call, keypair)
        return int(info["partialFee"])

    @_chain_errors
    def transfers(self, number: int) -> list[Transfer]:
        """Balances.Transfer events of a block."""
        with self._lock:
            block_hash = self._api.get_block_hash(number)
            events = self._api.get_events(block_hash)
        found = []
        for index, event in enumerate(events):
            value: dict[str, Any] = event.value
            if value.get("module_id") == "Balances" and value.get("event_id") == "Transfer":
                attrs = value["attributes"]
                found.append(
                    Transfer(
                        number,
                        str(block_hash),
                        index,
                        str(attrs["from"]),
                        str(attrs["to"]),
                        int(attrs["amount"]),
                    )
                )
        return found

    @_chain_errors
    def extrinsics_by(self, number: int, signer: str) -> list[SignedExtrinsic]:
        """Signed extrinsics of `signer` in a block, with their nonce and outcome."""
        with self._lock:
            block_hash = self._api.get_block_hash(number)
            block = self._api.get_block(block_hash)
            events = self._api.get_events(block_hash)
        failed = {
            e.value.get("extrinsic_idx")
            for e in events
            if e.value.get("module_id") == "System" and e.value.get("event_id") == "ExtrinsicFailed"
        }
        found = []
        for index, extrinsic in enumerate(block["extrinsics"]):
            value = extrinsic.value
            address = value.get("address")
            if address is None:
                continue
            if self._ss58(address) != signer:
                continue
            call = value.get("call", {})
            args = {a.get("name"): a.get("value") for a in call.get("call_args", [])}
            is_transfer = call.get("call_module") == "Balances" and "value" in args
            dest = args.get("dest") if is_transfer else None
            if isinstance(dest, dict):  # MultiAddress::Id
                dest = dest.get("Id")
            found.append(
                SignedExtrinsic(
                    number,
                    str(block_hash),
                    str(value.get("extrinsic_hash")),
                    int(value.get("nonce", -1)),
                    index not in failed,
                    self._ss58(dest) if dest else None,
                    int(args["value"]) if is_transfer else None,
                )
            )
        return found

    @_chain_errors
    def remarks(self, block_hash: str) -> list[tuple[str | None, bytes]]:
        """(signer, data) of every System.remark / remark_with_event in a block."""
        with self._lock:
            block = self._api.get_block(block_hash)
        found: list[tuple[str | None, bytes]] = []
        for extrinsic in block["extrinsics"]:
            address = extrinsic.value.get("address")
            signer = self._ss58(address) if address else None
            call = extrinsic.value.get("call", {})
            if call.get("call_module") == "System" and call.get("call_function") in (
                "remark",
                "remark_with_event",
            ):
                for arg in call.get("call_args", []):
                    if arg.get("name") == "remark":
                        value = arg.get("value")
                        if isinstance(value, str) and value.startswith("0x"):
                            found.append((signer, bytes.fromhex(value[2:])))
                        elif isinstance(value, str):
                            found.append((signer, value.encode()))
                        elif isinstance(value, bytes | bytearray):
                            found.append((signer, bytes(value)))
        return found

    def _ss58(self, address: Any) -> str:
        if isinstance(address, str) and not address.startswith("0x"):
            return address
        return str(Keypair(public_key=address, ss58_format=self.ss58_format).ss58_address)

    # -- writes --------------------------------------------------------------------------

    def _submit(self, keypair: Keypair, call: Any, nonce: int | None) -> Receipt:
        try:
            # Mortal (valid for 64 blocks): a copy stuck in some pool cannot land days later.
            extrinsic = self._api.create_signed_extrinsic(
                call=call, keypair=keypair, nonce=nonce, era={"period": 64}
            )
            receipt = self._api.submit_extrinsic(extrinsic, wait_for_finalization=True)
        except SubstrateRequestException as exc:
            raise ChainError(f"the chain refused the transaction: {exc}", retry=False) from exc
        except Exception as exc:
            raise ChainError(f"the chain could not be reached: {exc}") from exc
        if not receipt.is_success:
            raise ChainError(f"the transaction failed: {receipt.error_message}", retry=False)
        number = int(self._api.get_block_number(receipt.block_hash))
        return Receipt(
            str(receipt.extrinsic_hash), str(receipt.block_hash), number,
            int(receipt.total_fee_amount or 0),
        )  # fmt: skip

    def transfer(
        self, keypair: Keypair, dest: str, amount: int, nonce: int | None = None
    ) -> Receipt:
        """Balances.transfer_keep_alive, waited until finalized. With `nonce` fixed, the same
        transfer can be re-submitted safely: the chain includes at most one."""
        with self._lock:
            call = self._api.compose_call(
                "Balances", "transfer_keep_alive", {"dest": dest, "value": amount}
            )
            return self._submit(keypair, call, nonce)

    def remark(self, keypair: Keypair, data: bytes, nonce: int | None = None) -> Receipt:
        """System.remark_with_event, waited until finalized (anchors a digest). With `nonce`
        fixed, re-sending is safe: the chain includes at most one."""
        with self._lock:
            call = self._api.compose_call("System", "remark_with_event", {"remark": data})
            return self._submit(keypair, call, nonce)
