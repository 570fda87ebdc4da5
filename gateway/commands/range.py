"""`pdg range …`: run data-range experiments (数据靶场) against the configured gateway database."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Data range: emergency scenarios and experiments.", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Data-range tools (experiments run through the real services, in an isolated range)."""


@app.command()
def run(
    experiment: str = typer.Argument(..., help="an experiment YAML file, or the name of a packaged sample"),
    out: Path | None = typer.Option(None, "--out", help="where to write report.json/.html and the proof bundle"),
) -> None:
    """Run EXPERIMENT under the baseline and under its scenario; write its report and proof bundle."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from common.actor import Actor
    from common.errors import DomainError
    from datarange import definition, service
    from gateway.cli import _settings
    from gateway.db import unit_of_work
    from gateway.state import build_state

    path = Path(experiment)
    try:
        text = (
            path.read_text(encoding="utf-8") if path.suffix in (".yaml", ".yml") else definition.load_sample(experiment)
        )
    except OSError as exc:
        typer.echo(f"cannot read {experiment}: {exc}", err=True)
        raise typer.Exit(2) from None
    except DomainError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(2) from None
    from gateway.db import upgrade

    state = build_state(_settings())
    upgrade(state.engine)  # idempotent; a fresh data directory works too
    actor = Actor.system("range-cli")
    try:
        with unit_of_work(state.engine) as s:
            run_id = service.start(s, actor=actor, text=text).id
        with Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
        ) as bar:
            task = bar.add_task(run_id, total=None)

            def progress(phase: str, done: int, total: int) -> None:
                bar.update(task, description=f"{run_id}: {phase}", completed=done, total=total)

            rep = service.execute(
                lambda: unit_of_work(state.engine), run_id, keyring=state.keyring, data_dir=state.data_dir,
                cursor_key=state.secret_key, out_dir=out, progress=progress,
            )  # fmt: skip
    except DomainError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(1) from None
    finally:
        from sandbox import queries

        queries.shutdown_runner()
    d = rep["decisions"]
    typer.echo(f"experiment {run_id} done: report in {rep['files']}")
    for name, x in d.items():
        typer.echo(f"  {name:9} {x['allowed']} allowed, {x['denied']} denied ({x['scenario'] or 'baseline rules'})")
    typer.echo(f"  {len(rep['differences'])} tasks differed; what-if: {rep['whatif']['differences']} decisions differ")
    failed = [t for x in rep["expectations"].values() for t in x["failed"]]
    if failed:
        typer.echo(f"  unexpected outcomes: {', '.join(failed)}", err=True)
    typer.echo(f"  verify: cd {rep['files']} && {rep['proof']['verify']}")
    raise typer.Exit(1 if failed else 0)


@app.command("samples")
def samples_cmd() -> None:
    """List the packaged sample experiments."""
    from datarange import definition

    for name, path in definition.samples().items():
        typer.echo(f"{name}\t{path}")
