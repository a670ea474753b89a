"""This host's signing key: its own sr25519 key (`host-key`, 0600 in the state directory),
which the provider's wallet delegates; the wallet itself only on hosts set up before host
keys, until their next setup run delegates a host key and removes the wallet."""

from __future__ import annotations

import logging

from substrateinterface import Keypair

from kumulus.config import AgentSettings
from kumulus.core.signing import SecretFileError, load_keypair, new_mnemonic, write_secret_file

log = logging.getLogger(__name__)


def ensure_host_key(settings: AgentSettings) -> Keypair:
    """This host's key, made (0600) on first use."""
    path = settings.host_key_path
    if not path.exists():
        write_secret_file(path, new_mnemonic())
        log.info("made this host's key %s (mode 0600)", path)
    return load_keypair(path)


def signing_key(settings: AgentSettings) -> Keypair | None:
    """The key heartbeats, stats, registration and answers are signed with: the stored
    wallet while there is one (a legacy host, which the backend knows by its wallet until
    a delegation of its host key succeeds; setup then removes the wallet), else the host
    key, else None (nothing is signed)."""
    # Wallet first: setup makes the host key before delegating it, and when the delegation
    # fails the backend still expects the wallet; an undelegated key would silence the host.
    for path, what in ((settings.mnemonic_path, "wallet"), (settings.host_key_path, "host key")):
        if not path.exists():
            continue
        try:
            return load_keypair(path)
        except SecretFileError as exc:
            log.error("%s not loaded: %s", what, exc)
            return None
    log.warning(
        "no host key at %s: health stats and signed answers are off until setup makes one "
        "(`kumulus agent host-key`)",
        settings.host_key_path,
    )
    return None
