"""Text -> typed Arrow columns per the registered schema, vectorised, with the positions that failed."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from catalog.fields import FieldSpec

ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "datetime": pa.timestamp("s"),
}
INT_RE = r"^[+-]?\d{1,18}$"
NUM_RE = r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d{1,3})?$"
TRUE = ["true", "t", "yes", "y", "1", "是"]
FALSE = ["false", "f", "no", "n", "0", "否"]
DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y%m%d")
DATETIME_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y/%m/%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
)
EXPECTED = {
    "integer": "a whole number such as 42",
    "number": "a number such as 3.14",
    "boolean": "true/false, 1/0 or 是/否",
    "date": "a real date written YYYY-MM-DD (or YYYY/MM/DD, YYYYMMDD)",
    "datetime": "a date and time written YYYY-MM-DD HH:MM:SS",
}
# Spreadsheet formula injection (CSV injection): '=' or '@' first, or '+'/'-' not followed by a number.
FORMULA_START = r"^[\t\r ]*[=@+\-]"
PLAIN_SIGNED = r"^[\t\r ]*[+\-][\d.,\s()\-]*$"


DATE_SHAPE = r"^(\d{4}-\d{2}-\d{2}|\d{4}/\d{2}/\d{2}|\d{8})$"
DATETIME_SHAPE = r"^\d{4}[-/]\d{2}[-/]\d{2}([ T]\d{2}:\d{2}(:\d{2})?)?$"
_FILLER = "0000-00-00 00:00:00"


def _fixed(text: pa.Array, width: int) -> np.ndarray:
    """ASCII strings of exactly `width` bytes as an (n, width) uint8 matrix, straight from Arrow buffers."""
    arr = text.cast(pa.string())
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset : arr.offset + n + 1]
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)
    return data[offsets[0] : offsets[0] + n * width].reshape(n, width).astype(np.int64) - 48


def _days(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(days since 1970-01-01, real-calendar-date mask), vectorised (H. Hinnant's days_from_civil)."""
    leap = ((y % 4 == 0) & (y % 100 != 0)) | (y % 400 == 0)
    dim = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[np.clip(m, 0, 12)] + ((m == 2) & leap)
    ok = (m >= 1) & (m <= 12) & (d >= 1) & (d <= dim) & (y >= 1)
    yy = y - (m <= 2)
    era = yy // 400
    yoe = yy - era * 400
    doy = (153 * (m + np.where(m > 2, -3, 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468, ok


def _parse_time(text: pa.Array, with_time: bool) -> pa.Array:
    """Dates (date32) or datetimes (timestamp[s]); impossible ones such as 02-30 or 25:00 become null."""
    shape = pc.fill_null(pc.match_substring_regex(text, DATETIME_SHAPE if with_time else DATE_SHAPE), False)
    fixed = pc.if_else(shape, pc.utf8_rpad(text, width=19, padding="0"), pa.scalar(_FILLER))
    b = _fixed(pc.utf8_slice_codeunits(fixed, 0, 19), 19)
    compact = (b[:, 4] >= 0) & (b[:, 4] <= 9)  # YYYYMMDD
    md = np.where(compact[:, None], b[:, 4:8], b[:, [5, 6, 8, 9]])
    y = b[:, 0] * 1000 + b[:, 1] * 100 + b[:, 2] * 10 + b[:, 3]
    days, ok = _days(y, md[:, 0] * 10 + md[:, 1], md[:, 2] * 10 + md[:, 3])
    ok &= shape.to_numpy(zero_copy_only=False)
    if not with_time:
        return pa.array(days.astype(np.int32), pa.int32(), mask=~ok).cast(pa.date32())
    hh, mi, ss = (b[:, i] * 10 + b[:, i + 1] for i in (11, 14, 17))
    ok &= (hh < 24) & (mi < 60) & (ss < 60)
    secs = days * 86400 + hh * 3600 + mi * 60 + ss
    return pa.array(secs, pa.int64(), mask=~ok).cast(pa.timestamp("s"))


def convert(col: pa.Array, spec: FieldSpec) -> tuple[pa.Array, np.ndarray]:
    """(typed array, positions of non-empty values that are not a valid `spec.type`)."""
    if pa.types.is_large_string(col.type):
        col = col.cast(pa.string())
    if spec.type == "string":
        return col, np.zeros(0, dtype=np.int64)
    text = pc.utf8_trim_whitespace(col)
    text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
    if spec.type == "integer":
        ok = pc.match_substring_regex(text, INT_RE)
        typed = pc.if_else(ok, text, pa.scalar(None, pa.string())).cast(pa.int64())
    elif spec.type == "number":
        ok = pc.match_substring_regex(text, NUM_RE)
        typed = pc.if_else(ok, text, pa.scalar(None, pa.string())).cast(pa.float64())
    elif spec.type == "boolean":
        low = pc.utf8_lower(text)
        is_true, is_false = pc.is_in(low, pa.array(TRUE)), pc.is_in(low, pa.array(FALSE))
        typed = pc.if_else(pc.or_(is_true, is_false), is_true, pa.scalar(None, pa.bool_()))
    elif spec.type == "date":
        typed = _parse_time(text, with_time=False)
    else:
        typed = _parse_time(text, with_time=True)
    bad = pc.and_(pc.is_valid(text), pc.is_null(typed))
    return typed, np.flatnonzero(bad.to_numpy(zero_copy_only=False))


def formula_positions(col: pa.Array) -> np.ndarray:
    """Positions of text cells a spreadsheet would evaluate as a formula (kept as text, only flagged)."""
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        return np.zeros(0, dtype=np.int64)
    starts = pc.fill_null(pc.match_substring_regex(col, FORMULA_START), False)
    if not pc.any(starts).as_py():
        return np.zeros(0, dtype=np.int64)
    signed_number = pc.fill_null(pc.match_substring_regex(col, PLAIN_SIGNED), False)
    return np.flatnonzero(pc.and_(starts, pc.invert(signed_number)).to_numpy(zero_copy_only=False))


def max_text_bytes(col: pa.Array) -> int:
    """Longest value in bytes (0 for non-text or all-null columns)."""
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        return 0
    m = pc.max(pc.binary_length(col)).as_py()
    return int(m or 0)


def compatible(arrow_type: pa.DataType, spec: FieldSpec) -> bool:
    """Whether a typed Parquet column can hold `spec.type` without losing meaning."""
    t = spec.type
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return True  # converted value by value, failures reported by row
    if t == "integer":
        return pa.types.is_integer(arrow_type)
    if t == "number":
        return (
            pa.types.is_integer(arrow_type)
            or pa.types.is_floating(arrow_type)
            or pa.types.is_decimal(arrow_type)
        )
    if t == "boolean":
        return pa.types.is_boolean(arrow_type)
    if t in ("date", "datetime"):
        return pa.types.is_date(arrow_type) or pa.types.is_timestamp(arrow_type)
    return pa.types.is_null(arrow_type)


def cast_typed(col: pa.Array, spec: FieldSpec) -> pa.Array:
    """A compatible typed Parquet column cast to the stored type."""
    target = ARROW_TYPES[spec.type]
    if pa.types.is_timestamp(col.type) and col.type.tz is not None:
        col = col.cast(pa.timestamp(col.type.unit))
    return col.cast(target, safe=False) if spec.type in ("date", "datetime") else col.cast(target)
