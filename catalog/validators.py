"""Vectorised value checks for the field tags (numpy/pandas; no per-row Python loops).

Every check takes a pandas Series (coord_china takes two) and returns a boolean Series aligned to it,
True where the value passes. Nulls pass every check except `not_null`: missingness is `not_null`'s
job (and `required` implies it), as in Great Expectations' column-map expectations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from common import clock

ID_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
ID_CHECK = np.frombuffer(b"10X98765432", dtype=np.uint8)
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = np.array([pow(3, i, 31) for i in range(17)], dtype=np.int64)
_USCC_LUT = np.full(256, -1, dtype=np.int64)
_USCC_LUT[np.frombuffer(USCC_ALPHABET.encode(), dtype=np.uint8)] = np.arange(31)
# GB/T 2260 province-level prefixes (incl. Taiwan 71, Hong Kong 81, Macao 82).
PROVINCES = frozenset(f"{p}" for p in (11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42))
PROVINCES |= frozenset(f"{p}" for p in (43, 44, 45, 46, 50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82))
CHINA_LON = (73.5, 135.1)
CHINA_LAT = (3.8, 53.6)
MOBILE = r"(?:\+?86[- ]?)?1[3-9]\d{9}"
LANDLINE = r"(?:\+?86[- ]?)?0\d{2,3}-?\d{7,8}(?:-\d{1,6})?"
EMAIL = (
    r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9\-]{1,63})*\.[A-Za-z]{2,24}"
)


def _text(s: pd.Series) -> pd.Series:
    """The series as strings (nulls kept null), so checks work on typed and text columns alike."""
    if pd.api.types.is_string_dtype(s.dtype) and not pd.api.types.is_object_dtype(s.dtype):
        return s
    return s.astype("string")


def _fixed_bytes(values: pd.Series, width: int) -> np.ndarray:
    """Values already known to be `width` ASCII chars, as an (n, width) uint8 matrix (zero-copy via Arrow)."""
    n = len(values)
    if n == 0:
        return np.zeros((0, width), dtype=np.uint8)
    arr = pa.array(values, type=pa.large_string()) if not hasattr(values.array, "_pa_array") else None
    if arr is None:
        chunked = values.array._pa_array
        arr = chunked.combine_chunks() if isinstance(chunked, pa.ChunkedArray) else chunked
        if arr.type not in (pa.string(), pa.large_string()):
            arr = arr.cast(pa.large_string())
    off_type = np.int64 if arr.type == pa.large_string() else np.int32
    offsets = np.frombuffer(arr.buffers()[1], dtype=off_type)[arr.offset : arr.offset + n + 1]
    start = int(offsets[0])
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[start : start + n * width]
    return data.reshape(n, width)


def _all_width(t: pd.Series, width: int | None) -> np.ndarray | None:
    """The (n, width) byte matrix when every value is present and exactly `width` bytes (None: as
    many as the first value), else None.

    The common case for identifiers; lets their checks skip the regex pass and the Python-level hashing.
    """
    arr = getattr(t.array, "_pa_array", None)
    if arr is None or len(t) == 0:
        return None
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    if arr.null_count or arr.type not in (pa.string(), pa.large_string()):
        return None
    off_type = np.int64 if arr.type == pa.large_string() else np.int32
    offsets = np.frombuffer(arr.buffers()[1], dtype=off_type)[arr.offset : arr.offset + len(t) + 1]
    width = int(offsets[1] - offsets[0]) if width is None else width
    if width == 0 or int(offsets[-1] - offsets[0]) != width * len(t) or not (np.diff(offsets) == width).all():
        return None
    start = int(offsets[0])
    return np.frombuffer(arr.buffers()[2], dtype=np.uint8)[start : start + len(t) * width].reshape(-1, width)


def _is_digit(b: np.ndarray) -> np.ndarray:
    return (b >= 48) & (b <= 57)


def _shaped(t: pd.Series, pattern: str) -> tuple[np.ndarray, np.ndarray, pd.Series]:
    """(ok mask failing non-null misshapen values, positions of well-shaped values, those values)."""
    present = t.notna().to_numpy()
    shape = t.str.fullmatch(pattern).fillna(False).astype(bool).to_numpy()
    ok = ~(present & ~shape)
    idx = np.flatnonzero(present & shape)
    return ok, idx, (t if len(idx) == len(t) else t.iloc[idx])


def _calendar_ok(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """True where (y, m, d) is a real Gregorian date."""
    leap = ((y % 4 == 0) & (y % 100 != 0)) | (y % 400 == 0)
    dim = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[np.clip(m, 0, 12)]
    dim = dim + ((m == 2) & leap)
    return (m >= 1) & (m <= 12) & (d >= 1) & (d <= dim)


def _today_int() -> int:
    t = clock.local(clock.now()).date()
    return t.year * 10000 + t.month * 100 + t.day


def gb11643(s: pd.Series) -> pd.Series:
    """Resident ID: 17 digits + MOD 11-2 check char; digits 7-14 a real birth date, 1900..today."""
    t = _text(s)
    whole = _all_width(t, 18)
    if whole is not None:  # every value 18 bytes: the shape check on the bytes, no regex pass
        last = whole[:, 17]
        shape = _is_digit(whole[:, :17]).all(axis=1) & (_is_digit(last) | (last == 88) | (last == 120))
        ok, idx = shape.copy(), np.flatnonzero(shape)
        b = whole[idx] if len(idx) < len(t) else whole.copy()
    else:
        ok, idx, cand = _shaped(t, r"\d{17}[\dXx]")
        b = _fixed_bytes(cand, 18).copy() if len(cand) else None
    if b is not None and len(b):
        b[b[:, 17] == ord("x"), 17] = ord("X")
        # float32 BLAS dot is exact here (sums < 2^24) and far faster than an int64 matmul.
        total = (b[:, :17].astype(np.float32) - 48) @ ID_WEIGHTS.astype(np.float32)
        check_ok = ID_CHECK[total.astype(np.int64) % 11] == b[:, 17]
        digits = b[:, 6:14].astype(np.int64) - 48
        y = digits[:, 0] * 1000 + digits[:, 1] * 100 + digits[:, 2] * 10 + digits[:, 3]
        m = digits[:, 4] * 10 + digits[:, 5]
        d = digits[:, 6] * 10 + digits[:, 7]
        birth_ok = _calendar_ok(y, m, d) & (y >= 1900) & (y * 10000 + m * 100 + d <= _today_int())
        ok[idx[~(check_ok & birth_ok)]] = False
    return pd.Series(ok, index=s.index)


def gb32100(s: pd.Series) -> pd.Series:
    """Unified social credit code: 18 chars over 0-9A-HJ-NPQRTUWXY with the GB 32100 check char."""
    t = _text(s)
    ok, idx, cand = _shaped(t, r"[0-9A-HJ-NPQRTUWXY]{18}")
    if len(cand):
        v = _USCC_LUT[_fixed_bytes(cand, 18)]
        total = v[:, :17].astype(np.float32) @ USCC_WEIGHTS.astype(np.float32)
        check = (31 - total.astype(np.int64) % 31) % 31
        ok[idx[check != v[:, 17]]] = False
    return pd.Series(ok, index=s.index)


def _regex(s: pd.Series, pattern: str) -> pd.Series:
    t = _text(s)
    return (t.str.fullmatch(pattern) | t.isna()).fillna(True).astype(bool)


def phone_cn(s: pd.Series) -> pd.Series:
    """Mainland mobile (1[3-9] + 9 digits) or landline (0 + area code, 7-8 digits, optional extension)."""
    return _regex(s, f"{MOBILE}|{LANDLINE}")


def email(s: pd.Series) -> pd.Series:
    """A plausible e-mail address (local@domain.tld); no mailbox lookup."""
    return _regex(s, EMAIL)


def admin_division(s: pd.Series) -> pd.Series:
    """A 6-digit GB/T 2260 code shape with a real province prefix (e.g. 510107)."""
    t = _text(s)
    ok = t.str.fullmatch(r"\d{6}").fillna(False).astype(bool) & t.str[:2].isin(PROVINCES)
    return (ok | t.isna()).astype(bool)


def coord_china(lon: pd.Series, lat: pd.Series) -> pd.Series:
    """Both coordinates inside China's bounding box (lon 73.5-135.1, lat 3.8-53.6); null pair passes."""
    x = pd.to_numeric(lon, errors="coerce").astype("float64").to_numpy()
    y = pd.to_numeric(lat, errors="coerce").astype("float64").to_numpy()
    inside = (x >= CHINA_LON[0]) & (x <= CHINA_LON[1]) & (y >= CHINA_LAT[0]) & (y <= CHINA_LAT[1])
    both_null = lon.isna().to_numpy() & lat.isna().to_numpy()
    return pd.Series(inside | both_null, index=lon.index)


def date_valid(
    s: pd.Series, *, not_future: bool = False, min_year: int = 1900, max_year: int = 2100
) -> pd.Series:
    """A real calendar date (YYYY-MM-DD, YYYY/MM/DD or YYYYMMDD text, or a date column) in range."""
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        y, m, d = s.dt.year.to_numpy(), s.dt.month.to_numpy(), s.dt.day.to_numpy()
        present = s.notna().to_numpy()
        ok = np.ones(len(s), dtype=bool)
        yy, mm, dd = (np.nan_to_num(a.astype("float64")).astype(np.int64) for a in (y, m, d))
    else:
        t = _text(s)
        ok, idx, cand = _shaped(t, r"(?:\d{4}-\d{2}-\d{2}|\d{4}/\d{2}/\d{2}|\d{8})(?:[ T][0-9:.]*)?")
        present = np.zeros(len(s), dtype=bool)
        present[idx] = True
        b = _fixed_bytes(cand.str.slice(0, 10).str.pad(10, side="right"), 10).astype(np.int64) - 48
        compact = (b[:, 4] >= 0) & (b[:, 4] <= 9)  # YYYYMMDD; else YYYY-MM-DD or YYYY/MM/DD
        digits = np.where(compact[:, None], b[:, :8], b[:, [0, 1, 2, 3, 5, 6, 8, 9]])
        yy = np.zeros(len(s), dtype=np.int64)
        mm, dd = yy.copy(), yy.copy()
        yy[idx] = digits[:, 0] * 1000 + digits[:, 1] * 100 + digits[:, 2] * 10 + digits[:, 3]
        mm[idx] = digits[:, 4] * 10 + digits[:, 5]
        dd[idx] = digits[:, 6] * 10 + digits[:, 7]
    good = _calendar_ok(yy, mm, dd) & (yy >= min_year) & (yy <= max_year)
    if not_future:
        good &= yy * 10000 + mm * 100 + dd <= _today_int()
    return pd.Series(ok & (good | ~present), index=s.index)


def bank_card_luhn(s: pd.Series) -> pd.Series:
    """A 12-19 digit card number whose Luhn checksum is 0."""
    t = _text(s)
    ok, idx, cand = _shaped(t, r"\d{12,19}")
    if len(cand):
        padded = cand.str.pad(19, side="left", fillchar="0")  # leading zeros do not change Luhn
        d = (_fixed_bytes(padded, 19) - 48).astype(np.int64)[:, ::-1]
        dbl = d[:, 1::2] * 2
        total = d[:, 0::2].sum(axis=1) + (dbl - 9 * (dbl > 9)).sum(axis=1)
        ok[idx[total % 10 != 0]] = False
    return pd.Series(ok, index=s.index)


def unique(s: pd.Series) -> pd.Series:
    """False for every occurrence of a value that appears more than once (nulls pass)."""
    fixed = _all_width(s, None)
    if fixed is not None and fixed.shape[1] <= 64:
        # Identifiers of one width: a 64-bit hash of the bytes finds the candidates (equal values hash
        # alike), then the exact test runs on those few only. About 5x faster than hashing the strings.
        h = np.zeros(len(s), dtype=np.uint64)
        with np.errstate(over="ignore"):
            for j in range(fixed.shape[1]):
                h = h * np.uint64(1099511628211) + fixed[:, j]
        maybe = pd.Series(h).duplicated(keep=False).to_numpy()
        ok = np.ones(len(s), dtype=bool)
        if maybe.any():
            cand = s.iloc[np.flatnonzero(maybe)]
            ok[np.flatnonzero(maybe)] = ~cand.duplicated(keep=False).to_numpy()
        return pd.Series(ok, index=s.index)
    return pd.Series(~s.duplicated(keep=False) | s.isna(), index=s.index)


def not_null(s: pd.Series) -> pd.Series:
    """False where the value is null or blank text."""
    if pd.api.types.is_string_dtype(s.dtype) or pd.api.types.is_object_dtype(s.dtype):
        blank = _text(s).str.strip().eq("").fillna(False).astype(bool)
        return pd.Series(s.notna() & ~blank, index=s.index)
    return pd.Series(s.notna(), index=s.index)


# Checks over one column, by the names the policies vocabulary uses. coord_china takes a column pair.
COLUMN_CHECKS: dict[str, Callable[..., pd.Series]] = {
    "gb11643": gb11643,
    "gb32100": gb32100,
    "phone_cn": phone_cn,
    "admin_division": admin_division,
    "date_valid": date_valid,
    "email": email,
    "bank_card_luhn": bank_card_luhn,
    "unique": unique,
    "not_null": not_null,
}
CHECK_NAMES = frozenset(COLUMN_CHECKS) | {"coord_china"}


def run_check(name: str, s: pd.Series, **kwargs: Any) -> pd.Series:
    """Apply the named single-column check (KeyError for an unknown name)."""
    return COLUMN_CHECKS[name](s, **kwargs)
