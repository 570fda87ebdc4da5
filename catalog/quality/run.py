"""The fast path: planned checks evaluated with numpy/pandas, reported in GX's result shape."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from catalog import validators as v
from catalog.fields import Schema
from catalog.quality.plan import CUSTOM, Planned
from catalog.quality.report import CheckResult

# GX expectation types the fast path evaluates itself (same semantics as GX: nulls are skipped by
# column-map expectations, `unexpected_percent` is over non-null values, regexes use search).
BUILTIN_FAST = {
    "expect_column_values_to_not_be_null",
    "expect_column_values_to_be_unique",
    "expect_column_values_to_be_in_set",
    "expect_column_values_to_not_be_in_set",
    "expect_column_values_to_be_between",
    "expect_column_values_to_match_regex",
    "expect_column_values_to_not_match_regex",
    "expect_column_value_lengths_to_be_between",
    "expect_column_to_exist",
    "expect_table_row_count_to_be_between",
}
FAST_TYPES = BUILTIN_FAST | set(CUSTOM.values())
_BY_TYPE = {t: c for c, t in CUSTOM.items()}


def _between(x: pd.Series, lo: Any, hi: Any, strict_lo: bool = False, strict_hi: bool = False) -> pd.Series:
    ok = pd.Series(True, index=x.index)
    if lo is not None:
        ok &= (x > lo) if strict_lo else (x >= lo)
    if hi is not None:
        ok &= (x < hi) if strict_hi else (x <= hi)
    return ok.fillna(False).astype(bool)


def _mask_for(df: pd.DataFrame, p: Planned) -> tuple[pd.Series, int]:
    """(pass mask, number of missing values) for one column-level check."""
    t, kw = p.expectation_type, p.kwargs
    if p.check == "coord_china":
        a, b = df[kw["column_A"]], df[kw["column_B"]]
        return v.coord_china(a, b), int((a.isna() & b.isna()).sum())
    col = df[kw["column"]]
    missing = int(col.isna().sum())
    name = _BY_TYPE.get(t)
    if name is not None:
        return v.run_check(name, col, **p.params), missing
    present = col.notna()
    if t in ("expect_column_values_to_be_in_set", "expect_column_values_to_not_be_in_set"):
        inside = col.isin(list(kw.get("value_set") or []))
        ok = inside if t == "expect_column_values_to_be_in_set" else ~inside
    elif t == "expect_column_values_to_be_between":
        x = col if pd.api.types.is_numeric_dtype(col.dtype) else pd.to_numeric(col, errors="coerce")
        ok = _between(
            x,
            kw.get("min_value"),
            kw.get("max_value"),
            kw.get("strict_min", False),
            kw.get("strict_max", False),
        )
    elif t in ("expect_column_values_to_match_regex", "expect_column_values_to_not_match_regex"):
        found = col.astype("string").str.contains(kw["regex"], regex=True).fillna(False).astype(bool)
        ok = found if "not_match" not in t else ~found
    else:  # value lengths
        ok = _between(col.astype("string").str.len(), kw.get("min_value"), kw.get("max_value"))
    return (ok | ~present).astype(bool), missing


def run_fast(
    df: pd.DataFrame, p: Planned, schema: Schema, mask: Callable[..., pd.Series], k: int
) -> CheckResult:
    """Evaluate one planned check; exceptions become a failed result naming the error, not a crash."""
    from catalog.quality import _samples  # local: the package imports this module

    n = len(df)
    base: dict[str, Any] = {
        "check": p.check,
        "expectation_type": p.expectation_type,
        "kwargs": p.kwargs,
        "source": p.source,
        "severity": p.severity,
        "mostly": p.mostly,
        "element_count": n,
    }
    t = p.expectation_type
    if t == "expect_table_row_count_to_be_between":
        ok = bool(_between(pd.Series([n]), p.kwargs.get("min_value"), p.kwargs.get("max_value")).iloc[0])
        return CheckResult(**base, passed=ok)
    if t == "expect_column_to_exist":
        present = p.kwargs.get("column") in df.columns
        return CheckResult(**base, passed=present, exception=None if present else "column does not exist")
    for c in (p.kwargs.get("column"), p.kwargs.get("column_A"), p.kwargs.get("column_B")):
        if c is not None and c not in df.columns:
            return CheckResult(**base, passed=False, exception=f"column {str(c)[:60]!r} does not exist")
    try:
        ok, missing = _mask_for(df, p)
    except Exception as exc:  # a bad regex or kwargs in a declared suite: report, don't crash
        return CheckResult(**base, passed=False, exception=f"{type(exc).__name__}: {str(exc)[:200]}")
    bad = np.flatnonzero(~ok.to_numpy(dtype=bool))
    evaluated = n if p.check == "not_null" else n - missing
    frac = len(bad) / evaluated if evaluated else 0.0
    return CheckResult(
        **base,
        missing_count=missing,
        unexpected_count=len(bad),
        unexpected_percent=round(100.0 * frac, 6),
        passed=(1.0 - frac) >= p.mostly - 1e-12,
        samples=_samples(df, bad[:k].tolist(), p.column, schema, mask),
    )
