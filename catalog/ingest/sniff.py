"""Recognise what an upload really is (magic bytes, not its name) and which text encoding it uses."""

from __future__ import annotations

import codecs
import zipfile
from pathlib import Path

from common.errors import Invalid, TooLarge, Unsupported

FORMATS = ("csv", "xlsx", "parquet")
ENCODINGS = ("utf-8", "utf-8-sig", "gbk", "gb18030")
SAMPLE_BYTES = 1 << 20
_OTHER_MAGIC = {
    b"\xd0\xcf\x11\xe0": "a legacy Office (.xls/.doc) file: save it as .xlsx or CSV",
    b"\x1f\x8b": "gzip-compressed: decompress it first",
    b"%PDF": "a PDF document: export the table as CSV or XLSX",
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"7z\xbc\xaf": "a 7-Zip archive: extract it first",
    b"Rar!": "a RAR archive: extract it first",
    b"SQLite format 3": "an SQLite database: export the table as CSV or Parquet",
}


def sniff_format(path: Path, declared: str | None = None) -> str:
    """'csv', 'xlsx' or 'parquet' from the first bytes; Unsupported for anything else or a mismatch."""
    with path.open("rb") as fh:
        head = fh.read(4096)
    if not head:
        raise Invalid("the file is empty: upload a file with a header row and at least one data row")
    if head.startswith(b"PAR1"):
        found = "parquet"
    elif head.startswith(b"PK\x03\x04"):
        found = _zip_kind(path)
    else:
        for magic, what in _OTHER_MAGIC.items():
            if head.startswith(magic):
                raise Unsupported(f"the file is {what}; upload CSV, XLSX or Parquet")
        if head.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise Unsupported("the file is UTF-16 text: save it as UTF-8 (or GBK/GB18030) CSV")
        if b"\x00" in head:
            raise Unsupported("the file is binary, not CSV text: upload CSV, XLSX or Parquet")
        found = "csv"
    if declared is not None:
        declared = declared.lower().lstrip(".")
        if declared not in FORMATS:
            raise Unsupported(f"format {declared[:20]!r} is not supported: use csv, xlsx or parquet")
        if declared != found:
            raise Unsupported(
                f"the file is {found.upper()}, not {declared.upper()} as declared: fix the name or type"
            )
    return found


def _zip_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
    except zipfile.BadZipFile:
        raise Unsupported("the file looks like a ZIP/XLSX but is damaged: re-save it") from None
    if "xl/workbook.xml" in names:
        return "xlsx"
    raise Unsupported("the file is a ZIP archive but not an XLSX workbook: upload CSV, XLSX or Parquet")


def guard_zip(path: Path, *, max_uncompressed: int, max_ratio: float, max_entries: int = 10_000) -> None:
    """Refuse zip bombs from the central directory alone, before any entry is inflated."""
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
    if len(infos) > max_entries:
        raise TooLarge(
            f"the workbook holds {len(infos)} parts (limit {max_entries}): it is not a plain table"
        )
    total = sum(i.file_size for i in infos)
    if total > max_uncompressed:
        raise TooLarge(
            f"the workbook expands to {total // 2**20} MiB (limit {max_uncompressed // 2**20} MiB): "
            "split it or upload CSV"
        )
    for i in infos:
        if i.file_size > 1 << 20 and i.file_size > max_ratio * max(i.compress_size, 1):
            raise TooLarge(
                f"workbook part {i.filename[:60]!r} is compressed {i.file_size // max(i.compress_size, 1)}:1 "
                f"(limit {int(max_ratio)}:1), which looks like a zip bomb: upload CSV instead"
            )


def detect_encoding(path: Path, declared: str | None = None) -> str:
    """UTF-8 (with or without BOM), GBK or GB18030, from a strict decode of the first MiB."""
    if declared is not None:
        enc = declared.lower().replace("_", "-")
        enc = {"utf8": "utf-8", "utf-8-bom": "utf-8-sig", "cp936": "gbk"}.get(enc, enc)
        if enc not in ENCODINGS:
            raise Unsupported(f"encoding {declared[:20]!r} is not supported: use UTF-8, GBK or GB18030")
        return enc
    with path.open("rb") as fh:
        sample = fh.read(SAMPLE_BYTES)
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    for enc in ("utf-8", "gbk", "gb18030"):
        try:
            codecs.getincrementaldecoder(enc)("strict").decode(sample, final=len(sample) < SAMPLE_BYTES)
            return enc
        except UnicodeDecodeError:
            continue
    raise Invalid(
        "the file's text is not valid UTF-8, GBK or GB18030 (possibly mixed encodings): "
        "re-save the whole file as UTF-8"
    )
