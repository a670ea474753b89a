"""The heartbeat size check reads a payload's size off its signed message (one JSON
serialisation per heartbeat instead of two): that size must be exactly the length of the
payload's compact JSON, which the 413 limit has always been stated in, for every payload."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from substrateinterface import Keypair

from kumulus.core.signing import (
    Domain,
    envelope_message,
    keypair_from_mnemonic,
    payload_size,
    sign_envelope,
)

KEYPAIR: Keypair = keypair_from_mnemonic(Keypair.generate_mnemonic())

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),  # any code point: escaped as \\uXXXX (and surrogate pairs) in both forms
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)
payloads = st.dictionaries(st.text(max_size=12), json_values, max_size=8)


@settings(max_examples=150, deadline=None)
@given(payload=payloads, domain=st.sampled_from([Domain.HEARTBEAT, Domain.HOST_REGISTRATION]))
def test_the_size_read_off_the_message_is_the_compact_json_length(
    payload: dict[str, Any], domain: Domain
) -> None:
    envelope = sign_envelope(KEYPAIR, payload, domain=domain)
    message = envelope_message(envelope, domain)
    assert payload_size(envelope, domain, message) == len(
        json.dumps(envelope.payload, separators=(",", ":"), allow_nan=False)
    )


def test_a_payload_with_keys_out_of_order_and_non_ascii_text() -> None:
    payload = {"z": "é☃\U0001f600", "a": [1.5, None, {"y": 1, "b": 2}], "": {}}
    envelope = sign_envelope(KEYPAIR, payload, domain=Domain.HEARTBEAT)
    message = envelope_message(envelope, Domain.HEARTBEAT)
    expected = len(json.dumps(payload, separators=(",", ":")))
    assert payload_size(envelope, Domain.HEARTBEAT, message) == expected == 67
