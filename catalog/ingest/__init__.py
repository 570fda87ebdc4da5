"""Ingest an upload (CSV/XLSX/Parquet) into a typed Parquet file and a conformance report.

`ingest()` streams: memory is bounded by one block/row group, whatever the file size. Structural
faults (empty, header only, unreadable, too large, wrong format/encoding, duplicate headers, zip
bomb, Parquet of the wrong schema) raise `Invalid`/`TooLarge`/`Unsupported` and leave nothing behind.
Value-level faults (missing/extra columns, values failing their type, ragged rows, formula-looking
cells) are collected in the report with 1-based data-row numbers (the header is row 0).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, Field

from catalog.fields import Schema
from catalog.ingest import convert as cv
from catalog.ingest.readers import Source, open_csv, open_parquet, open_xlsx
from catalog.ingest.sniff import detect_encoding, sniff_format
from common.errors import Invalid, TooLarge

__all__ = ["IngestLimits", "IngestResult", "Problem", "ingest"]


class IngestLimits(BaseModel):
    """Configurable bounds; the gateway's settings build one."""

    max_bytes: int = 2 * 2**30
    max_columns: int = 1000
    max_field_bytes: int = 2**20
    max_rows: int | None = None
    block_bytes: int = 8 * 2**20
    xlsx_max_uncompressed: int = 512 * 2**20
    xlsx_max_ratio: float = 200.0
    sample_rows: int = 20
    row_group_rows: int = 131_072


class Problem(BaseModel):
    """One conformance finding: what, where (column, sample of row numbers), how many."""

    kind: Literal["missing_column", "extra_column", "type", "ragged_row", "formula"]
    severity: Literal["error", "warning"]
    column: str | None = None
    count: int = 0
    rows: list[int] = Field(default_factory=list)
    message: str


class IngestResult(BaseModel):
    """Rows and columns stored, the detected format/encoding, the report, and the Parquet path."""

    rows: int
    columns: list[str]
    format: str
    encoding: str | None
    problems: list[Problem]
    parquet_path: str

    @property
    def ok(self) -> bool:
        """No error-severity problem (warnings such as flagged formulas do not block)."""
        return not any(p.severity == "error" for p in self.problems)

    def raise_for_problems(self) -> None:
        """Raise `Invalid` carrying the report if any problem is an error."""
        if not self.ok:
            errors = [p for p in self.problems if p.severity == "error"]
            raise Invalid(
                f"the file does not conform to the registered schema ({len(errors)} problems): "
                + "; ".join(p.message for p in errors[:5]),
                extra={"conformance": [p.model_dump() for p in self.problems]},
            )


def ingest(
    src_path: str | Path,
    *,
    schema: Schema,
    dest_parquet: str | Path,
    fmt: str | None = None,
    encoding: str | None = None,
    sheet: str | None = None,
    limits: IngestLimits | None = None,
) -> IngestResult:
    """Decode, conform and type an upload into `dest_parquet`; see the module docstring."""
    lim = limits or IngestLimits()
    src_path, dest = Path(src_path), Path(dest_parquet)
    size = src_path.stat().st_size
    if size > lim.max_bytes:
        raise TooLarge(f"the file is {size // 2**20} MiB; the limit is {lim.max_bytes // 2**20} MiB")
    found = sniff_format(src_path, fmt)
    enc: str | None = None
    arrow_schema: pa.Schema | None = None
    if found == "csv":
        enc = detect_encoding(src_path, encoding)
        block = max(lim.block_bytes, 2 * lim.max_field_bytes)
        source = open_csv(src_path, enc, block=block, max_field=lim.max_field_bytes)
    elif found == "xlsx":
        source = open_xlsx(
            src_path, sheet=sheet, max_uncompressed=lim.xlsx_max_uncompressed, max_ratio=lim.xlsx_max_ratio
        )
    else:
        source, arrow_schema = open_parquet(src_path)
    part = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
    try:
        rows, problems = _conform(source, schema, lim, part, arrow_schema)
        os.replace(part, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
    return IngestResult(
        rows=rows, columns=schema.names, format=found, encoding=enc, problems=problems, parquet_path=str(dest)
    )


def _check_header(header: list[str], schema: Schema, lim: IngestLimits) -> list[str]:
    names = [h.strip() for h in header]
    if len(names) > lim.max_columns:
        raise TooLarge(f"the file has {len(names)} columns; the limit is {lim.max_columns}")
    if any(not n for n in names):
        raise Invalid("the header has an empty column name: name every column (or delete the empty one)")
    seen: set[str] = set()
    dups = sorted({n for n in names if n in seen or seen.add(n)})  # type: ignore[func-returns-value]
    if dups:
        raise Invalid(f"duplicate column names in the header {dups[:10]}: give every column a distinct name")
    return names


def _conform(
    source: Source, schema: Schema, lim: IngestLimits, part: Path, arrow_schema: pa.Schema | None
) -> tuple[int, list[Problem]]:
    names = _check_header(source.header, schema, lim)
    pos = {n: i for i, n in enumerate(names)}
    problems = _column_problems(names, schema)
    if arrow_schema is not None:
        _check_parquet_schema(arrow_schema, names, schema, problems)
    out_schema = pa.schema([(f.name, cv.ARROW_TYPES[f.type]) for f in schema.fields])
    type_fail: dict[str, list[int]] = {f.name: [] for f in schema.fields}
    type_count = dict.fromkeys(schema.names, 0)
    formula: dict[str, list[int]] = {}
    formula_count: dict[str, int] = {}
    rows = 0
    with pq.ParquetWriter(part, out_schema, compression="zstd", compression_level=1) as writer:
        buffered: list[pa.RecordBatch] = []
        for batch in _batches(source):
            n = batch.num_rows
            cols = []
            for f in schema.fields:
                if f.name not in pos:
                    cols.append(pa.nulls(n, cv.ARROW_TYPES[f.type]))
                    continue
                col = batch.column(pos[f.name])
                if cv.max_text_bytes(col) > lim.max_field_bytes:
                    raise TooLarge(
                        f"column {f.name!r} has a value over {lim.max_field_bytes // 1024} KiB "
                        "(the field size limit): shorten it or store it elsewhere"
                    )
                if f.type == "string" and arrow_schema is None:
                    _note(formula, formula_count, f.name, cv.formula_positions(col), rows, lim.sample_rows)
                if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
                    typed, bad = cv.convert(col, f)
                else:
                    typed, bad = cv.cast_typed(col, f), np.zeros(0, dtype=np.int64)
                type_count[f.name] += _note(type_fail, None, f.name, bad, rows, lim.sample_rows)
                cols.append(typed)
            rows += n
            if lim.max_rows is not None and rows > lim.max_rows:
                raise TooLarge(f"the file has more than {lim.max_rows} data rows: split it")
            buffered.append(pa.RecordBatch.from_arrays(cols, schema=out_schema))
            if sum(b.num_rows for b in buffered) >= lim.row_group_rows:
                writer.write_table(pa.Table.from_batches(buffered, out_schema))
                buffered = []
        if buffered:
            writer.write_table(pa.Table.from_batches(buffered, out_schema))
    ragged = _ragged_rows(source, lim.sample_rows)
    if rows == 0 and not source.ragged_count:
        raise Invalid("the file has a header row but no data rows: add data rows")
    problems += _value_problems(schema, type_fail, type_count, formula, formula_count, ragged)
    if source.ragged_count:
        problems.append(
            Problem(
                kind="ragged_row",
                severity="error",
                count=source.ragged_count,
                rows=ragged,
                message=f"{source.ragged_count} rows do not have {len(names)} fields "
                "(check for stray delimiters or unbalanced quotes)",
            )
        )
    return rows, problems


def _batches(source: Source) -> Iterator[pa.RecordBatch]:
    yield from source.batches


def _note(
    store: dict[str, list[int]],
    counts: dict[str, int] | None,
    name: str,
    bad: np.ndarray,
    offset: int,
    k: int,
) -> int:
    """Record up to k failing positions as 1-based row numbers; returns how many failed."""
    if len(bad):
        got = store.setdefault(name, [])
        got.extend((bad[: max(0, k - len(got))] + offset + 1).tolist())
        if counts is not None:
            counts[name] = counts.get(name, 0) + len(bad)
    return len(bad)


def _ragged_rows(source: Source, k: int) -> list[int]:
    if source.ragged_count and not source.ragged and source.locate_ragged is not None:
        source.ragged = source.locate_ragged(k)
    return source.ragged[:k]


def _shift(rows: list[int], ragged: list[int]) -> list[int]:
    """Row numbers counted over good rows -> data-row numbers, re-inserting the skipped ragged rows."""
    out = []
    for r in rows:
        for skipped in ragged:
            if skipped <= r:
                r += 1
        out.append(r)
    return out


def _column_problems(names: list[str], schema: Schema) -> list[Problem]:
    problems = []
    for f in schema.fields:
        if f.name not in names:
            sev: Literal["error", "warning"] = "error" if f.required else "warning"
            problems.append(
                Problem(
                    kind="missing_column",
                    severity=sev,
                    column=f.name,
                    message=f"column {f.name!r} ({f.label}) is missing"
                    + ("; it is required" if f.required else "; stored as empty"),
                )
            )
    for n in names:
        if n not in schema.names:
            problems.append(
                Problem(
                    kind="extra_column",
                    severity="error",
                    column=n[:100],
                    message=f"column {n[:60]!r} is not in the registered schema: remove or register it",
                )
            )
    return problems


def _check_parquet_schema(
    arrow_schema: pa.Schema, names: list[str], schema: Schema, problems: list[Problem]
) -> None:
    wrong = [
        f"{f.name} is {arrow_schema.field(f.name).type} but registered as {f.type}"
        for f in schema.fields
        if f.name in names and not cv.compatible(arrow_schema.field(f.name).type, f)
    ]
    shape = [p.message for p in problems if p.severity == "error"]
    if wrong or shape:
        raise Invalid(
            "the Parquet file has the wrong schema: " + "; ".join((wrong + shape)[:10]),
            extra={"columns": wrong + shape},
        )


def _value_problems(
    schema: Schema,
    type_fail: dict[str, list[int]],
    type_count: dict[str, int],
    formula: dict[str, list[int]],
    formula_count: dict[str, int],
    ragged: list[int],
) -> list[Problem]:
    out = []
    for f in schema.fields:
        if type_count[f.name]:
            out.append(
                Problem(
                    kind="type",
                    severity="error",
                    column=f.name,
                    count=type_count[f.name],
                    rows=_shift(type_fail[f.name], ragged),
                    message=f"{type_count[f.name]} values in {f.name!r} are not {cv.EXPECTED[f.type]}",
                )
            )
        if formula_count.get(f.name):
            out.append(
                Problem(
                    kind="formula",
                    severity="warning",
                    column=f.name,
                    count=formula_count[f.name],
                    rows=_shift(formula[f.name], ragged),
                    message=f"{formula_count[f.name]} values in {f.name!r} look like spreadsheet formulas; "
                    "kept as text and never evaluated — check them",
                )
            )
    return out
