"""`pdg package`: verify and decrypt an export package offline (the enterprise side)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from gmcrypto.errors import InvalidKey, InvalidPackage
from gmcrypto.package import Manifest, open_package, verify_package
from gmcrypto.sm2 import PrivateKey, PublicKey

app = typer.Typer(help="Verify and decrypt export packages offline.", no_args_is_help=True)

GatewayKeys = Annotated[
    list[Path],
    typer.Option("--gateway-key", help="Gateway public key PEM (repeat for rotated keys)."),
]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def _trusted(paths: list[Path]) -> list[PublicKey]:
    keys = []
    for p in paths:
        try:
            keys.append(PublicKey.from_pem(p.read_bytes()))
        except OSError as e:
            raise _fail(f"cannot read gateway key {p}: {e.strerror}") from None
        except InvalidKey:
            raise _fail(f"{p} is not an SM2 public key (PEM)") from None
    if not keys:
        raise _fail("give the gateway's public key with --gateway-key")
    return keys


def _summary(m: Manifest) -> str:
    refs = json.dumps(m.references, ensure_ascii=False, sort_keys=True)
    return (
        f"package {m.package_id}\n  created      {m.created}\n  references   {refs}\n"
        f"  length       {m.total_length} bytes in {m.chunk_count} chunk(s)\n"
        f"  payload SM3  {m.payload_sm3}\n  signed by    {m.signer_key_id}\n"
        f"  for key      {m.recipient_key_id}"
    )


@app.command("verify")
def verify(
    file: Annotated[Path, typer.Argument(help="The package file.")],
    gateway_key: GatewayKeys = [],  # noqa: B006 - Typer needs a literal default for list options
) -> None:
    """Check the gateway's signature and the payload digest (no private key needed)."""
    trusted = _trusted(gateway_key)
    try:
        manifest = verify_package(file, trusted)
    except (InvalidPackage, ValueError) as e:
        raise _fail(f"{file}: {e}") from None
    typer.echo(_summary(manifest))
    typer.echo("OK: signature and payload verified")


@app.command("decrypt")
def decrypt(
    file: Annotated[Path, typer.Argument(help="The package file.")],
    key: Annotated[Path, typer.Option("--key", help="Your SM2 private key PEM.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the decrypted payload.")],
    gateway_key: GatewayKeys = [],  # noqa: B006
    password_env: Annotated[
        str | None, typer.Option(help="Environment variable holding the private key's password.")
    ] = None,
) -> None:
    """Verify, then decrypt to OUT; nothing is left at OUT unless every check passed."""
    trusted = _trusted(gateway_key)
    password = os.environ.get(password_env, "").encode() if password_env else None
    try:
        private = PrivateKey.from_pem(key.read_bytes(), password or None)
    except OSError as e:
        raise _fail(f"cannot read private key {key}: {e.strerror}") from None
    except InvalidKey:
        raise _fail(f"{key} is not an SM2 private key (PEM), or the password is wrong") from None
    tmp = out.with_name(f".{out.name}.partial")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as dst:
            manifest = open_package(file, dst, private=private, trusted=trusted)
        os.replace(tmp, out)
    except (InvalidPackage, ValueError) as e:
        tmp.unlink(missing_ok=True)
        raise _fail(f"{file}: {e}; nothing was written") from None
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise _fail(f"cannot write {out}: {e.strerror}") from None
    typer.echo(_summary(manifest))
    typer.echo(f"OK: {manifest.total_length} bytes written to {out}")
