"""Whole-table downloads of an open edition in constant memory: CSV, NDJSON and the Parquet file.

Every generator reads Arrow record batches from the stored Parquet and formats each batch with a
vectorised writer (pyarrow's CSV writer, DuckDB's to_json), never per row in Python. Totals
(rows, bytes) accumulate in a `StreamTotals` that the caller reads, or gets through `on_close`,
when the stream ends or is abandoned: one audit record per download, off the hot path.

Memory (measured on a 10M-row download, bench/results/open.md): the Parquet reader runs without
pre-buffering (it kept every row group's bytes until the end), and Arrow's default pool (mimalloc
here) hands each batch's memory back to the system once it is written (`_release`) instead of
keeping it for reuse (a worker stayed ~100 MiB bigger after one large download).

GBK policy: GBK cannot encode every character (rare name characters in CJK Extension B, emoji).
Those become `?` and are counted in `StreamTotals.replaced_chars`; ask for `gb18030`, which
encodes all of Unicode, or UTF-8 when nothing may be lost.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from common.errors import BadRequest, DomainError

ROW = "_row"
BATCH_ROWS = 16384  # smaller chunks: less held per write (chunk, framing copy, socket buffer)
FILE_CHUNK = 1 << 20
ENCODINGS = ("utf-8", "gbk", "gb18030")


class RangeNotSatisfiable(DomainError):
    """The Range header asks for bytes the file does not have; answer 416 with Content-Range."""

    status = 416
    type_slug = "range-not-satisfiable"
    title = "Range not satisfiable"

    def __init__(self, detail: str, *, size: int) -> None:
        super().__init__(detail, extra={"content_range": f"bytes */{size}"})
        self.size = size


@dataclass
class StreamTotals:
    """What one download sent: filled in while streaming, final once `completed` or closed."""

    rows: int = 0
    bytes: int = 0
    completed: bool = False
    replaced_chars: int = 0


def iter_batches(parquet_path: str | Path, fields: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """Record batches of the open edition, without the internal row number, in stored order."""
    # pre_buffer (pyarrow's default) caches every row group's raw bytes for the reader's lifetime: a
    # 10M-row download grew the worker by the file's size (+240 MiB). Local files need no pre-buffering.
    pf = pq.ParquetFile(parquet_path, pre_buffer=False)
    names = [n for n in pf.schema_arrow.names if n != ROW]
    if fields is not None:
        unknown = [f for f in fields if f not in names]
        if unknown:
            raise BadRequest(f"unknown field {unknown[0][:40]!r}; fields are {', '.join(names)}")
        names = list(fields)
    if pf.metadata.num_rows == 0:  # still yield one (empty) batch so CSV gets its header row
        yield pa.RecordBatch.from_pylist([], schema=pa.schema([pf.schema_arrow.field(n) for n in names]))
        return
    yield from pf.iter_batches(batch_size=BATCH_ROWS, columns=names, use_threads=False)


def _release() -> None:
    """Return freed Arrow memory to the system (mimalloc/jemalloc keep it otherwise; a no-op for malloc)."""
    pa.default_memory_pool().release_unused()


def _finish(totals: StreamTotals, on_close: Callable[[StreamTotals], None] | None) -> None:
    _release()
    if on_close is not None:
        on_close(totals)


def csv_stream(
    batches: Iterator[pa.RecordBatch],
    totals: StreamTotals,
    *,
    bom: bool = False,
    encoding: str = "utf-8",
    on_close: Callable[[StreamTotals], None] | None = None,
) -> Iterator[bytes]:
    """CSV bytes (RFC 4180, header row, nulls empty, empty strings as ""), one chunk per batch."""
    if encoding not in ENCODINGS:
        raise BadRequest(f"encoding must be one of {', '.join(ENCODINGS)}")
    try:
        if bom and encoding == "utf-8":  # GBK/GB18030 files carry no BOM: Excel reads them by locale
            totals.bytes += 3
            yield b"\xef\xbb\xbf"
        header = True
        options = pacsv.WriteOptions(include_header=True)
        plain = pacsv.WriteOptions(include_header=False)
        for batch in batches:
            sink = io.BytesIO()
            pacsv.write_csv(batch, sink, write_options=options if header else plain)
            header = False
            chunk = sink.getvalue()
            del sink
            if encoding != "utf-8":
                chunk = _recode(chunk, encoding, totals)
            totals.rows += batch.num_rows
            totals.bytes += len(chunk)
            del batch
            _release()
            yield chunk
        totals.completed = True
    finally:
        _finish(totals, on_close)


def _recode(chunk: bytes, encoding: str, totals: StreamTotals) -> bytes:
    text = chunk.decode("utf-8")
    try:
        return text.encode(encoding)
    except UnicodeEncodeError:
        out = text.encode(encoding, errors="replace")
        # GBK trail bytes are 0x40-0xFE, so every b"?" is a real "?": the difference is exact.
        totals.replaced_chars += out.count(b"?") - text.count("?")
        return out


def ndjson_stream(
    batches: Iterator[pa.RecordBatch],
    totals: StreamTotals,
    *,
    on_close: Callable[[StreamTotals], None] | None = None,
) -> Iterator[bytes]:
    """One JSON object per line (UTF-8); dates as YYYY-MM-DD, timestamps as ISO text."""
    import duckdb  # lazy: only NDJSON needs it, and it costs every web worker tens of MB when imported

    con = duckdb.connect(config={"threads": 1})
    try:
        for batch in batches:
            con.register("b", batch)
            lines = con.sql("SELECT to_json(b)::VARCHAR || chr(10) AS j FROM b").to_arrow_table()
            con.unregister("b")
            chunk = _concat_strings(lines.column(0).combine_chunks())
            totals.rows += batch.num_rows
            totals.bytes += len(chunk)
            del batch, lines
            _release()
            if chunk:
                yield chunk
        totals.completed = True
    finally:
        con.close()
        _finish(totals, on_close)


def _concat_strings(arr: pa.Array) -> bytes:
    """The UTF-8 bytes of a non-null string array laid end to end, straight from its buffers."""
    if len(arr) == 0:
        return b""
    arr = arr.cast(pa.large_string())
    offsets = arr.buffers()[1]
    first = int.from_bytes(offsets[arr.offset * 8 : arr.offset * 8 + 8], "little", signed=True)
    end = (arr.offset + len(arr)) * 8
    last = int.from_bytes(offsets[end : end + 8], "little", signed=True)
    return arr.buffers()[2][first:last].to_pybytes()


def file_stream(
    path: str | Path,
    totals: StreamTotals,
    *,
    start: int = 0,
    end: int | None = None,
    on_close: Callable[[StreamTotals], None] | None = None,
) -> Iterator[bytes]:
    """Bytes start..end (inclusive) of a stored file in 1 MiB chunks."""
    try:
        with open(path, "rb") as fh:
            fh.seek(start)
            left = None if end is None else end - start + 1
            while left is None or left > 0:
                chunk = fh.read(FILE_CHUNK if left is None else min(FILE_CHUNK, left))
                if not chunk:
                    break
                if left is not None:
                    left -= len(chunk)
                totals.bytes += len(chunk)
                yield chunk
        totals.completed = True
    finally:
        _finish(totals, on_close)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """One byte range from a Range header as (start, end) inclusive; None means send it all.

    Multiple ranges, other units and malformed headers are ignored (RFC 9110 §14.2 lets a server
    ignore Range); a well-formed single range outside the file raises RangeNotSatisfiable (416).
    """
    if not header:
        return None
    unit, eq, spec = header.strip().partition("=")
    if not eq or unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    first, last = first.strip(), last.strip()
    if not dash or (first and not first.isdigit()) or (last and not last.isdigit()) or not (first or last):
        return None
    if not first:  # suffix range: the final N bytes
        n = int(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable("the suffix range is empty", size=size)
        return (max(0, size - n), size - 1)
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None  # syntactically invalid range: ignore it
    if start >= size:
        raise RangeNotSatisfiable(f"the file has {size} bytes; the range starts at {start}", size=size)
    return (start, min(end, size - 1))


def etag(content_digest: str, variant: str = "") -> str:
    """Strong ETag for one representation of one version (CSV with BOM differs from plain CSV)."""
    safe = "".join(c for c in f"{content_digest[:40]}-{variant}".strip("-") if c.isalnum() or c in "-._")
    return f'"{safe}"'


def http_date(when: dt.datetime) -> str:
    """IMF-fixdate for Last-Modified (UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return format_datetime(when.astimezone(dt.UTC).replace(microsecond=0), usegmt=True)


def not_modified(
    tag: str, last_modified: dt.datetime, *, if_none_match: str | None, if_modified_since: str | None
) -> bool:
    """True when the client's copy is current (answer 304); If-None-Match wins when present."""
    if if_none_match is not None:
        wanted = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
        return "*" in wanted or tag in wanted
    if if_modified_since:
        try:
            since = parsedate_to_datetime(if_modified_since)
        except (TypeError, ValueError, IndexError):
            return False
        if since.tzinfo is None:
            return False
        lm = last_modified if last_modified.tzinfo else last_modified.replace(tzinfo=dt.UTC)
        return lm.replace(microsecond=0) <= since
    return False


def range_applies(if_range: str | None, tag: str, last_modified: dt.datetime) -> bool:
    """If-Range: honour Range only when the validator still matches (strong comparison)."""
    if not if_range:
        return True
    if if_range.startswith('"'):
        return if_range.strip() == tag
    return if_range.strip() == http_date(last_modified)
