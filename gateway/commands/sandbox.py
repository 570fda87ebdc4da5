"""`pdg sandbox worker`: run one prepared query job in the cage (what the Kubernetes Job template runs).

A job is a JSON file on the shared data volume, written by the gateway after it guarded and authorised
the query: {"sql", "tables": {name: parquet path}, "granted": {name: [columns]}, "limits": {...},
"result": path}. The worker guards the SQL again (defence in depth), runs it in a caged DuckDB worker
process with no network, and writes the result as an Arrow IPC file atomically. Only plaintext
Parquet on the volume can be handed over this way (G1/G2 data, or open editions): encrypted-at-rest
versions are decrypted into memory only, inside the gateway's own caged workers — see docs/sandbox.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

app = typer.Typer(help="Sandbox workers (the caged query runner).", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Sandbox tools."""


@app.command()
def worker(job: Path = typer.Option(..., "--job", help="the job JSON file on the data volume")) -> None:
    """Run one query job and write its result (Arrow IPC) where the job says."""
    import pyarrow as pa

    from common.errors import DomainError
    from sandbox.runner import Limits, ParquetFile, SandboxRunner
    from sandbox.sqlguard import guard

    try:
        spec = json.loads(job.read_text(encoding="utf-8"))
        sql, tables, granted = spec["sql"], spec["tables"], spec["granted"]
        result_path = Path(spec["result"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        typer.echo(
            f"error: the job file is not a query job ({type(exc).__name__}): give sql, tables, granted, result",
            err=True,
        )
        raise typer.Exit(2) from None
    try:
        guarded = guard(sql, {t: set(cols) for t, cols in granted.items()})
        limits = Limits(**spec.get("limits", {}))
        with SandboxRunner(limits) as runner:
            res = runner.run(
                guarded.sql,
                {t: ParquetFile(p) for t, p in tables.items()},
                columns={t: set(c) for t, c in granted.items()},
            )
    except DomainError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(1) from None
    tmp = result_path.with_name(f".{result_path.name}.part")
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, res.table.schema) as writer:
        writer.write_table(res.table)
    os.replace(tmp, result_path)
    typer.echo(f"ok: {res.rows_returned} rows in {res.elapsed_ms:.0f} ms -> {result_path}")
