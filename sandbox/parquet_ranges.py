"""Some columns of a stored Parquet version, read on their own: the footer and those columns' chunks.

A version encrypted at rest is opened chunk by chunk (gmcrypto.atrest.RangeReader), so loading three
columns of a file decrypts about their share of it, and the other columns' bytes never leave the
gateway process: the worker gets the file's length and these byte ranges, the rest left as zeros.
The footer (schema and per-column statistics of every column) is sent whole, as Parquet needs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from common.errors import Invalid

_MAGIC = b"PAR1"


class Reader(Protocol):
    size: int

    def read(self, offset: int, length: int) -> bytes: ...


@dataclass(frozen=True)
class ParquetRanges:
    """A Parquet file of `size` bytes of which only `segments` ((offset, bytes), ...) are filled in."""

    size: int
    segments: tuple[tuple[int, bytes], ...] = field(repr=False)

    @property
    def nbytes(self) -> int:
        return sum(len(b) for _, b in self.segments)

    def assemble(self) -> bytearray:
        return assemble(self.size, self.segments)


def assemble(size: int, segments: tuple[tuple[int, bytes], ...] | list[tuple[int, bytes]]) -> bytearray:
    """The file image: zeros except the segments (what pyarrow reads for those columns is all there)."""
    buf = bytearray(size)
    for offset, data in segments:
        if offset < 0 or offset + len(data) > size:
            raise ValueError("segment outside the file")
        buf[offset : offset + len(data)] = data
    return buf


class PlainFile:
    """The Reader of a plaintext file (versions below the at-rest grade)."""

    def __init__(self, path: Path) -> None:
        self._f = Path(path).open("rb")  # noqa: SIM115 - closed by close() / the context manager
        self.size = Path(path).stat().st_size

    def read(self, offset: int, length: int) -> bytes:
        self._f.seek(offset)
        return self._f.read(length)

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> PlainFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_columns(reader: Reader, columns: list[str] | set[str]) -> ParquetRanges:
    """The byte ranges `columns` need (header magic, their column chunks in every row group, footer)."""
    size = reader.size
    if size < 12:
        raise Invalid("a stored version is not a Parquet file")
    tail = reader.read(size - 8, 8)
    footer_len = int.from_bytes(tail[:4], "little")
    if tail[4:] != _MAGIC or footer_len > size - 12:
        raise Invalid("a stored version is not a Parquet file")
    footer = reader.read(size - 8 - footer_len, footer_len + 8)
    meta = pq.ParquetFile(pa.BufferReader(_MAGIC + footer)).metadata
    wanted = set(columns)
    spans: list[tuple[int, int]] = []
    for rg in range(meta.num_row_groups):
        group = meta.row_group(rg)
        for c in range(group.num_columns):
            chunk = group.column(c)
            if chunk.path_in_schema.split(".")[0] not in wanted:
                continue
            start = chunk.data_page_offset
            if chunk.has_dictionary_page and chunk.dictionary_page_offset:
                start = min(start, chunk.dictionary_page_offset)
            spans.append((start, start + chunk.total_compressed_size))
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    segments = [(0, _MAGIC)]
    for start, end in merged:
        if start < 4 or end > size - 8 - footer_len:
            raise Invalid("a stored version's Parquet footer points outside its column data")
        segments.append((start, reader.read(start, end - start)))
    segments.append((size - 8 - footer_len, footer))
    return ParquetRanges(size, tuple(segments))
