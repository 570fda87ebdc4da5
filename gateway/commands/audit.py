"""`pdg audit …`: offline verification of an exported audit log (needs no settings and no database)."""

from __future__ import annotations

from pathlib import Path

import typer

from audit.verify import verify_export
from gmcrypto.errors import InvalidKey
from gmcrypto.sm2 import PublicKey

app = typer.Typer(help="Verify exported audit logs offline.", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Audit log tools (export is served by the gateway: it needs the database)."""


@app.command()
def verify(
    export: Path = typer.Argument(..., help="export directory or .zip"),
    public_key: list[Path] = typer.Option(
        ..., "--public-key", help="gateway SM2 public key PEM (repeatable)"
    ),
) -> None:
    """Check every record's hash, the chain, each checkpoint's Merkle root and SM2 signature."""
    keys = []
    for path in public_key:
        try:
            keys.append(PublicKey.from_pem(path.read_bytes()))
        except (OSError, InvalidKey) as exc:
            typer.echo(f"cannot read public key {path}: {exc}", err=True)
            raise typer.Exit(2) from None
    result = verify_export(export, keys)
    if result.ok:
        typer.echo(f"OK: {result.records} records, {result.checkpoints} signed checkpoints verified")
        return
    where = []
    if result.first_bad_seq is not None:
        where.append(f"record {result.first_bad_seq}")
    if result.checkpoint_id is not None:
        where.append(f"checkpoint {result.checkpoint_id}")
    typer.echo(f"FAILED at {', '.join(where) or 'the export'}: {result.problem}", err=True)
    raise typer.Exit(1)
