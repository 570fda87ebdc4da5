"""The `pdg` command line: the same services as HTTP, for people and scripts."""

from __future__ import annotations

import importlib
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from common.actor import Actor
from common.errors import DomainError

app = typer.Typer(
    help="Public Data Gateway (公共数据网关): run it, administer it, verify what it produced.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
admin_app = typer.Typer(help="Organisations, principals and tokens.", no_args_is_help=True)
principal_app = typer.Typer(help="Principals (people and systems that act).", no_args_is_help=True)
org_app = typer.Typer(
    help="Organisations (departments, enterprises, operator, audit offices).", no_args_is_help=True
)
token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(admin_app, name="admin")
admin_app.add_typer(principal_app, name="principal")
admin_app.add_typer(org_app, name="organisation")
admin_app.add_typer(token_app, name="token")

# Sub-command groups that live in gateway/commands/<name>.py, mounted when present.
for _name in ("keys", "package", "policies", "samples", "audit", "range", "sandbox"):
    try:
        _module = importlib.import_module(f"gateway.commands.{_name}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"gateway.commands.{_name}":
            raise
        continue
    app.add_typer(_module.app, name=_name)


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def _settings():
    from pydantic import ValidationError

    from gateway.settings import get_settings

    try:
        return get_settings()
    except ValidationError as exc:
        raise fail("; ".join(str(e.get("msg", e)) for e in exc.errors()), 2) from None


def _engine():
    from gateway.db import make_engine

    return make_engine(_settings().db_url)


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply migrations (idempotent)."""
    from gateway import db

    engine = _engine()
    db.upgrade(engine, revision)
    typer.echo(f"database at {db.current_revision(engine)}")


@db_app.command("current")
def db_current() -> None:
    """Show the applied and the expected migration."""
    from gateway import db

    typer.echo(f"applied: {db.current_revision(_engine())}  expected: {db.head_revision()}")


def _run_service(fn):
    """Run `fn(session)` in one unit of work; domain errors become a message and exit code 1."""
    from gateway.db import unit_of_work
    from gateway.state import install_decision_point

    engine = _engine()
    install_decision_point(_settings(), engine)
    try:
        with unit_of_work(engine) as session:
            return fn(session)
    except DomainError as exc:
        raise fail(exc.detail) from None


@org_app.command("create")
def org_create(
    code: Annotated[str, typer.Option(help="stable code, e.g. 510100-GA")],
    name: Annotated[str, typer.Option(help="name (Chinese welcome)")],
    kind: Annotated[str, typer.Option(help="department|enterprise|operator|audit_office|admin")],
    sm2_public_key: Annotated[Path | None, typer.Option(help="enterprise SM2 public key PEM")] = None,
) -> None:
    """Register an organisation."""
    import identity

    pem = sm2_public_key.read_text() if sm2_public_key else None
    org = _run_service(
        lambda s: identity.create_organisation(
            s, actor=Actor.system("cli"), code=code, name=name, kind=kind, sm2_public_key_pem=pem
        )
    )
    typer.echo(f"organisation {org.code} ({org.kind}) created")


@principal_app.command("create")
def principal_create(
    role: Annotated[str, typer.Option(help="department|operator|enterprise|auditor|admin")],
    org: Annotated[str, typer.Option(help="organisation code")],
    name: Annotated[str, typer.Option(help="display name")],
    expires_days: Annotated[int, typer.Option(help="token lifetime in days")] = 365,
) -> None:
    """Create a principal and print its API token once."""
    import identity

    principal, token = _run_service(
        lambda s: identity.create_principal(
            s,
            actor=Actor.system("cli"),
            org_code=org,
            role=role,
            name=name,
            expires_in=timedelta(days=expires_days),
        )
    )
    typer.echo(f"principal {principal.code} ({role} in {org}) created; its token (shown once):", err=True)
    typer.echo(token)


@token_app.command("revoke")
def token_revoke(token_id: Annotated[str, typer.Argument(help="the 16-character id after `pdg_`")]) -> None:
    """Revoke a token at once."""
    import identity

    _run_service(lambda s: identity.revoke_token(s, actor=Actor.system("cli"), token_id=token_id))
    typer.echo(f"token {token_id} revoked")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="bind address (PDG_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (PDG_PORT)")] = None,
    workers: Annotated[int | None, typer.Option(help="worker processes (PDG_WORKERS)")] = None,
) -> None:
    """Migrate, then serve (what a deployment runs). No sample data."""
    from gateway import server

    _apply_overrides(host, port, workers)
    server.serve(_settings(), samples=False)


@app.command()
def run(
    host: Annotated[str | None, typer.Option(help="bind address")] = None,
    port: Annotated[int | None, typer.Option(help="port")] = None,
    workers: Annotated[int | None, typer.Option(help="worker processes")] = None,
) -> None:
    """Embedded default: migrate, load the sample base libraries, print URLs and tokens, serve."""
    from gateway import server

    _apply_overrides(host, port, workers)
    server.serve(_settings(), samples=True)


def _apply_overrides(host: str | None, port: int | None, workers: int | None) -> None:
    # Workers are separate processes that read settings from the environment: pass overrides there.
    for key, value in (("PDG_HOST", host), ("PDG_PORT", port), ("PDG_WORKERS", workers)):
        if value is not None:
            os.environ[key] = str(value)
    from gateway.settings import get_settings

    get_settings.cache_clear()


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
