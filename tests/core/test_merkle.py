"""Merkle roots and proofs: every record verifies against the root; a changed record, a
changed proof or another root does not."""

from hypothesis import given
from hypothesis import strategies as st

from kumulus.core.merkle import root_and_proofs, verify

records = st.lists(
    st.fixed_dictionaries({"txn": st.text(max_size=8), "amount": st.integers(0, 10**15)}),
    min_size=1,
    max_size=33,
)


@given(records)
def test_every_record_verifies_and_tampering_fails(items: list[dict]) -> None:  # type: ignore[type-arg]
    root, proofs = root_and_proofs(items)
    for record, proof in zip(items, proofs, strict=True):
        assert verify(record, proof, root)
        assert not verify({**record, "amount": record["amount"] + 1}, proof, root)
        assert not verify(record, proof, "00" * 32)
        if proof:
            side = proof[0][0]
            assert not verify(record, [(side, "ff" * 32), *proof[1:]], root)
