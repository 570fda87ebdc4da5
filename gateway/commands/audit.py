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


def _service_context():
    """Settings, engine, keyring and policies for commands that act on the live log (as the gateway itself)."""
    from gateway.cli import _settings
    from gateway.db import make_engine
    from gateway.state import install_decision_point, load_keyring

    settings = _settings()
    engine = make_engine(settings.db_url)
    install_decision_point(settings, engine)
    return settings, engine, load_keyring(settings)


@app.command()
def checkpoint() -> None:
    """Sign a checkpoint of the live log now (what the checkpoint CronJob runs)."""
    from common.actor import Actor
    from common.errors import DomainError
    from gateway.db import unit_of_work
    from oversight import service

    _, engine, keyring = _service_context()
    try:
        with unit_of_work(engine) as s:
            cp = service.sign_now(s, actor=Actor.system("checkpoint"), keyring=keyring)
    except DomainError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"checkpoint {cp.id}: {cp.tree_size} records, root {cp.root_hash}")


@app.command("export")
def export_cmd(
    out: Path = typer.Option(..., "--out", help="a .zip file or a new directory"),
    first_seq: int = typer.Option(1, help="first record"),
    sign: bool = typer.Option(True, help="sign a checkpoint first so every record is covered"),
) -> None:
    """Export the live log with its checkpoints and proof material, for `pdg audit verify`."""
    from common.actor import Actor
    from common.errors import DomainError
    from gateway.db import unit_of_work
    from oversight import service

    _, engine, keyring = _service_context()
    actor = Actor.system("audit-export")
    try:
        if sign:
            with unit_of_work(engine) as s:
                service.sign_now(s, actor=actor, keyring=keyring)
        with unit_of_work(engine) as s:
            summary = service.export_log(s, actor=actor, out=out, first_seq=first_seq)
    except DomainError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"exported to {out}: {summary}")


@app.command("public-key")
def public_key_cmd(out: Path = typer.Option(..., "--out", help="where to write the PEM")) -> None:
    """Write the gateway's SM2 public key(s), which auditors need to verify offline."""
    _, _, keyring = _service_context()
    out.write_text("".join(k.to_pem().decode() for k in keyring.public_keys.values()))
    typer.echo(f"wrote {len(keyring.public_keys)} public key(s) to {out}")
