"""Streaming readers: each yields the header and record batches, never the whole file in memory."""

from __future__ import annotations

import codecs
import csv
import io
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from catalog.ingest.sniff import guard_zip
from common.errors import Invalid, TooLarge

XLSX_BATCH = 20_000


@dataclass
class Source:
    """An opened upload: its header as written, its batches, and the ragged rows found while reading."""

    header: list[str]
    batches: Iterator[pa.RecordBatch]
    ragged: list[int] = field(default_factory=list)  # data-row numbers, filled in after reading
    ragged_count: int = 0
    locate_ragged: Any = None  # callable(limit) -> list[int], for CSV


def _mixed_encoding(enc: str) -> Invalid:
    return Invalid(
        f"part of the file is not valid {enc.upper()} (mixed or wrong encoding): "
        "re-save the whole file in one encoding (UTF-8 preferred) or declare the right one"
    )


def _csv_header(path: Path, enc: str, block: int) -> list[str]:
    with path.open("rb") as fh:
        raw = fh.read(block)
        more = bool(fh.read(1))
    try:
        text = codecs.getincrementaldecoder(enc)("strict").decode(raw, final=not more)
    except UnicodeDecodeError:
        raise _mixed_encoding(enc) from None
    if not text.strip():
        raise Invalid("the file is empty: upload a header row and at least one data row")
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[list[str]] = []
    try:
        rows.extend(itertools.islice(reader, 2))
    except csv.Error:  # a huge first data field: the header is fine, the streaming reader rejects the rest
        if not rows:
            raise TooLarge(f"the header row is longer than {block // 2**20} MiB") from None
        rows.append(["<large>"])
    if more and len(rows) < 2:
        raise TooLarge(f"the header row is longer than {block // 2**20} MiB: check the delimiter and quoting")
    if len(rows) < 2 or not any(c.strip() for c in rows[1]):
        raise Invalid("the file has a header row but no data rows: add data rows")
    return rows[0]


def open_csv(path: Path, enc: str, *, block: int, max_field: int) -> Source:
    """pyarrow's streaming CSV reader, every column read as text (typed later per the schema)."""
    header = _csv_header(path, enc, block)
    src = Source(header=header, batches=iter(()))

    def on_ragged(_row: Any) -> str:
        src.ragged_count += 1
        return "skip"

    arrow_enc = "utf8" if enc in ("utf-8", "utf-8-sig") else enc
    try:
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=block, encoding=arrow_enc),
            parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_ragged),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in header},
                strings_can_be_null=True,
                null_values=[""],
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise _arrow_error(exc, enc, block) from None
    src.batches = _guarded(reader, enc, block)
    src.locate_ragged = lambda limit: _locate_ragged(path, enc, len(header), max_field, limit)
    return src


def _guarded(reader: Any, enc: str, block: int) -> Iterator[pa.RecordBatch]:
    try:
        yield from reader
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise _arrow_error(exc, enc, block) from None


def _arrow_error(exc: Exception, enc: str, block: int) -> Exception:
    msg = str(exc)
    if isinstance(exc, UnicodeDecodeError) or "UTF8" in msg or "decode" in msg.lower():
        return _mixed_encoding(enc)
    if "straddl" in msg or "block size" in msg:
        return TooLarge(
            f"a single field or row is larger than {block // 2**20} MiB: split the value or check for an "
            "unbalanced quote"
        )
    return Invalid(
        "the CSV could not be parsed (check its quoting and delimiter): save it again as standard CSV"
    )


def _locate_ragged(path: Path, enc: str, width: int, max_field: int, limit: int) -> list[int]:
    """Second pass (failure path only): data-row numbers of rows whose field count is not `width`."""
    csv.field_size_limit(max(max_field, 131072))
    found: list[int] = []
    with path.open("r", encoding=enc, newline="", errors="replace") as fh:
        reader = csv.reader(fh)
        next(reader, None)
        n = 0
        for row in reader:
            if not row:
                continue  # blank lines are not records (pyarrow skips them too)
            n += 1
            if len(row) != width:
                found.append(n)
                if len(found) >= limit:
                    break
    return found


def _cell(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%d") if v.time() == time(0) else v.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(v, date):
        return v.isoformat()
    return str(v)


def open_xlsx(path: Path, *, sheet: str | None, max_uncompressed: int, max_ratio: float) -> Source:
    """openpyxl read-only (streams the sheet XML); formulas come back as their '=...' text, never run."""
    from openpyxl import load_workbook

    guard_zip(path, max_uncompressed=max_uncompressed, max_ratio=max_ratio)
    try:
        wb = load_workbook(path, read_only=True, data_only=False)
    except Exception:
        raise Invalid(
            "the XLSX workbook could not be opened: re-save it with a spreadsheet program"
        ) from None
    if sheet is not None and sheet not in wb.sheetnames:
        raise Invalid(f"the workbook has no sheet {sheet[:40]!r}; its sheets are {wb.sheetnames[:20]}")
    ws = wb[sheet] if sheet is not None else wb.worksheets[0]
    rows = ws.iter_rows(values_only=True)
    first = next(rows, None)
    header = [_cell(c) or "" for c in (first or ())]
    while header and header[-1] == "":
        header.pop()
    if not header:
        wb.close()
        raise Invalid("the sheet is empty: put a header row and data rows in the first sheet (or name one)")
    src = Source(header=header, batches=iter(()))
    src.batches = _xlsx_batches(wb, rows, src)
    return src


def _xlsx_batches(wb: Any, rows: Iterator[tuple[Any, ...]], src: Source) -> Iterator[pa.RecordBatch]:
    width = len(src.header)
    names = [f"c{i}" for i in range(width)]
    n = 0
    try:
        while True:
            chunk = list(itertools.islice(rows, XLSX_BATCH))
            if not chunk:
                return
            cols: list[list[str | None]] = [[] for _ in range(width)]
            for row in chunk:
                if all(v is None for v in row):
                    continue  # blank spreadsheet rows are not records
                n += 1
                if any(v is not None for v in row[width:]):
                    src.ragged_count += 1
                    src.ragged.append(n)
                    continue
                for i in range(width):
                    cols[i].append(_cell(row[i]) if i < len(row) else None)
            if cols[0]:
                yield pa.RecordBatch.from_arrays([pa.array(c, pa.string()) for c in cols], names=names)
    finally:
        wb.close()


def open_parquet(path: Path, *, batch_rows: int = 65_536) -> tuple[Source, pa.Schema]:
    """A Parquet file's schema and batches (typed columns are checked against the registration)."""
    try:
        pf = pq.ParquetFile(path)
    except Exception:
        raise Invalid(
            "the Parquet file could not be read (damaged or not Parquet): export it again"
        ) from None
    schema = pf.schema_arrow
    if pf.metadata.num_rows == 0:
        raise Invalid("the Parquet file has columns but no rows: add data rows")

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            yield from pf.iter_batches(batch_size=batch_rows)
        except (pa.ArrowInvalid, OSError):
            raise Invalid("the Parquet file is damaged part-way through: export it again") from None

    return Source(header=list(schema.names), batches=batches()), schema
