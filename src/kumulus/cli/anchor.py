"""`kumulus anchor ls | proof` and `kumulus verify`: records anchored on chain about you,
their proofs, and checking one against the chain (chain/verify.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from kumulus.cli import session
from kumulus.cli.exits import Exit, fail
from kumulus.cli.output import JsonFlag, emit_json, table

app = typer.Typer(help="Records about you anchored on chain.", no_args_is_help=True)


@app.command("ls")
def anchor_ls(json_out: JsonFlag = False) -> None:
    """Anchored records about you (usage you paid or earned; your hosts' reputation),
    newest first: ANCHOR and INDEX name one for `kumulus anchor proof`."""
    with session.api(json_out) as api:
        records = api.my_anchored_records()
    if json_out:
        emit_json(records)
        return
    rows = [
        {"anchor": r.anchor_id, "index": r.index, "block": r.block_number,
         "record": json.dumps(r.record, sort_keys=True)[:100]}
        for r in records
    ]  # fmt: skip
    table(rows, [("anchor", "ANCHOR"), ("index", "INDEX"), ("block", "BLOCK"),
                 ("record", "RECORD")])  # fmt: skip


@app.command("proof")
def anchor_proof(
    anchor_id: Annotated[int, typer.Argument(help="ANCHOR of kumulus anchor ls")],
    index: Annotated[int, typer.Argument(help="INDEX of kumulus anchor ls")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="write it to this file (default: stdout)")
    ] = None,
) -> None:
    """The proof document of one record (JSON), what `kumulus verify` checks."""
    with session.api(True) as api:
        doc = api.anchor_proof(anchor_id, index)
    text = json.dumps(doc, indent=2)
    if out is None:
        typer.echo(text)
        return
    out.write_text(text + "\n")
    typer.echo(f"wrote {out}; check it: kumulus verify {out}", err=True)


def verify(
    proof_file: Annotated[Path, typer.Argument(help="a proof document (kumulus anchor proof)")],
    chain: Annotated[
        str | None, typer.Option(help="a node you trust (default: the document's, with a warning)")
    ] = None,
    signer: Annotated[
        str | None,
        typer.Option(help="the platform's anchor address (GET /healthz: anchorAddress)"),
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """Check a usage record or reputation score against the root anchored on chain, without
    trusting the backend: the Merkle proof must lead to the root, the root must be in a
    remark signed by the platform's anchor key, in a finalized block of the chain.
    Exit 7 when it is not verified."""
    from kumulus.chain.verify import ChainError, NotVerifiedError, ProofDocumentError, verify_proof

    try:
        doc = json.loads(proof_file.read_text())
    except (OSError, ValueError) as exc:
        fail(f"not a proof document: {exc}", Exit.USAGE, as_json=json_out)
    if chain is None or signer is None:
        typer.secho(
            "warning: trusting the document for the node URL or the anchor address; pass "
            "--chain and --signer from sources you trust",
            err=True,
            fg=typer.colors.YELLOW,
        )
    try:
        result = verify_proof(doc, chain, signer)
    except ProofDocumentError as exc:
        fail(str(exc), Exit.USAGE, as_json=json_out)
    except NotVerifiedError as exc:
        fail(f"NOT VERIFIED: {exc}", Exit.NOT_VERIFIED, as_json=json_out,
             error_code="not_verified")  # fmt: skip
    except ChainError as exc:
        fail(str(exc), Exit.RETRYABLE, as_json=json_out, error_code="unreachable")
    if json_out:
        emit_json({"verified": True, "root": result.root, "blockNumber": result.block_number})
        return
    typer.echo(
        f"verified: record is in the digest {result.root} anchored in block {result.block_number}"
    )
