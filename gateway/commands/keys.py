"""`pdg keys`: make SM2 key pairs (PEM) for enterprises, auditors and offline gateway use."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from gmcrypto.sm2 import PrivateKey

app = typer.Typer(help="SM2 key pairs (PEM, readable by OpenSSL).", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """SM2 key pairs (PEM, readable by OpenSSL)."""  # keeps `keys` a group even with one command


@app.command("generate")
def generate(
    out: Annotated[Path, typer.Option("--out", help="Directory for private.pem (0600) and public.pem.")],
    name: Annotated[str, typer.Option(help="File name stem: NAME.pem and NAME.pub.pem.")] = "sm2",
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Generate an SM2 key pair: a PKCS#8 private key (mode 0600) and its SubjectPublicKeyInfo."""
    private_path, public_path = out / f"{name}.pem", out / f"{name}.pub.pem"
    if not force and (private_path.exists() or public_path.exists()):
        typer.echo(f"error: {private_path} or {public_path} exists; use --force to replace it", err=True)
        raise typer.Exit(1)
    try:
        out.mkdir(parents=True, exist_ok=True)
        key = PrivateKey.generate()
        # O_EXCL on a fresh temp name + 0600 at creation: the private key is never world-readable.
        tmp = out / f".{name}.pem.tmp"
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.to_pem())
        os.replace(tmp, private_path)
        public_path.write_bytes(key.public_key().to_pem())
    except OSError as e:
        typer.echo(f"error: cannot write keys to {out}: {e.strerror}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"private key: {private_path} (keep it secret)")
    typer.echo(f"public key:  {public_path}")
    typer.echo(f"key id:      {key.key_id}")
