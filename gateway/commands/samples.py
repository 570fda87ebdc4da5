"""`pdg samples generate`: write a synthetic base library (seeded, optionally with known defects)."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path

import typer

from catalog import samples
from common.errors import DomainError

app = typer.Typer(help="Synthetic base libraries for demos, tests and benchmarks.", no_args_is_help=True)


class Library(StrEnum):
    population = "population"
    legal_person = "legal_person"
    geospatial = "geospatial"
    certificate = "certificate"


class Encoding(StrEnum):
    utf8 = "utf-8"
    utf8_sig = "utf-8-sig"
    gbk = "gbk"


class Format(StrEnum):
    csv = "csv"
    parquet = "parquet"
    xlsx = "xlsx"


@app.callback()
def _group() -> None:
    """Synthetic base libraries (kept a group so `pdg samples generate` reads the same everywhere)."""


@app.command()
def generate(
    library: Library = typer.Option(..., "--library", help="which base library"),
    rows: int = typer.Option(1000, "--rows", min=1, help="number of data rows"),
    out: Path = typer.Option(..., "--out", help="output file"),
    seed: int = typer.Option(20240601, "--seed", help="same seed, same rows"),
    defects: float = typer.Option(
        0.0, "--defects", min=0.0, max=0.3, help="fraction of rows per defect kind"
    ),
    encoding: Encoding = typer.Option(Encoding.utf8, "--encoding", help="CSV text encoding"),
    fmt: Format = typer.Option(Format.csv, "--format", help="file format"),
    legal_person_rows: int | None = typer.Option(
        None, "--legal-person-rows", help="certificates: size of the legal-person library they link to"
    ),
    defects_out: Path | None = typer.Option(None, "--defects-out", help="write injected defect rows as JSON"),
) -> None:
    """Generate LIBRARY with ROWS rows into OUT; prints the defect counts."""
    try:
        sample = samples.generate(
            library.value, rows, seed=seed, defects=defects, legal_person_rows=legal_person_rows
        )
        samples.write(sample, out, fmt=fmt.value, encoding=encoding.value)
    except DomainError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(2) from None
    if defects_out is not None:
        defects_out.write_text(json.dumps(sample.defects), encoding="utf-8")
    counts = {k: len(v) for k, v in sample.defects.items()}
    typer.echo(json.dumps({"library": library.value, "rows": rows, "out": str(out), "defects": counts}))
