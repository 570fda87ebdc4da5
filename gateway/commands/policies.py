"""`pdg policies …`: validate policy files before they are deployed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Policy files: vocabulary, Cedar rules, scenario overlays.", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Policy files: vocabulary, Cedar rules, scenario overlays."""


@app.command("check")
def check(
    directory: Annotated[Path | None, typer.Argument(help="policy directory (default: the packaged policies/)")] = None,
) -> None:
    """Validate a policy directory; print `file:line: problem` for each fault and exit 1 if any."""
    from policies.check import check_dir
    from policies.engine import version_of
    from policies.vocabulary import POLICY_DIR

    target = directory or POLICY_DIR
    problems = check_dir(target)
    for p in problems:
        typer.echo(str(p), err=True)
    if problems:
        typer.echo(f"{len(problems)} problem(s) in {target}", err=True)
        raise typer.Exit(1)
    typer.echo(f"ok: {target} (policy version {version_of(Path(target))})")
