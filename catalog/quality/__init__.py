"""The quality stage: declared GX expectations + the checks field tags imply, run vectorised.

`run_quality` plans every check (schema-implied: required → not_null, unique, allowed → in set,
minimum/maximum → between; tag checks from the policies; the department's stored GX suite), runs the
ones it knows with numpy/pandas (the fast path) and hands any other GX expectation to GX itself, and
reports all of them in GX's result shape. `run_gx_only` validates the same plan through GX alone
(built-in expectations only, so check digits become shape regexes) — the benchmark's baseline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from catalog.fields import Schema
from catalog.quality import gx as gxmod
from catalog.quality.plan import Planned, plan, to_gx_builtin
from catalog.quality.report import CheckResult, FailingRow, QualityReport, summarise
from catalog.quality.run import FAST_TYPES, run_fast
from common.errors import Invalid

__all__ = ["CheckResult", "QualityReport", "default_mask", "run_gx_only", "run_quality"]

Mask = Callable[[str, pd.Series], pd.Series]
PLAIN_TAGS = frozenset({"plain", "gender", "admin_code", "date", "amount", "org_name"})


def default_mask(tag: str, values: pd.Series) -> pd.Series:
    """Keep the first and last character of values whose tag may be sensitive ('5*****X')."""
    text = values.astype("string")
    if tag in PLAIN_TAGS:
        return text
    n = text.str.len().fillna(0).astype(int)
    stars = n.map(lambda k: "*" * max(k - 2, 1))
    return (text.str[:1] + stars + text.str[-1:].where(n > 1, "")).where(text.notna())


def _frame(data: str | Path | pd.DataFrame | pa.Table, columns: list[str] | None = None) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data.reset_index(drop=True)
    if isinstance(data, pa.Table):
        table = data
    else:
        present = set(pq.read_schema(data).names)
        wanted = None if columns is None else [c for c in columns if c in present]
        table = pq.read_table(data, columns=wanted)
        if wanted is not None and len(wanted) < len(columns or []):
            table = pq.read_table(data)  # a registered column is missing: let _require_columns say which
    return table.to_pandas(date_as_object=False)


def _columns_needed(planned: list[Planned], schema: Schema) -> list[str] | None:
    """The columns the planned checks read (plus the key for the report), or None for all of them: a
    check the fast path does not know is handed to GX with the whole frame."""
    if any(p.expectation_type not in FAST_TYPES for p in planned):
        return None
    cols = [schema.key] if schema.key else []
    for p in planned:
        cols += [c for c in (p.kwargs.get(k) for k in ("column", "column_A", "column_B")) if isinstance(c, str)]
    return list(dict.fromkeys(c for c in cols if c in schema.names))


def run_quality(
    data: str | Path | pd.DataFrame | pa.Table,
    *,
    schema: Schema,
    tag_checks: dict[str, list[dict[str, Any]]],
    suite_json: str | dict[str, Any] | None = None,
    mask: Mask | None = None,
    sample_size: int = 10,
) -> QualityReport:
    """Validate a dataset version; see the module docstring. Invalid for an unusable plan or suite."""
    t0 = time.perf_counter()
    suite_name = None
    if suite_json is not None:
        suite_name = gxmod.load_suite(suite_json).name  # fails loudly if GX would drop expectations
    planned = plan(schema, tag_checks, gxmod.suite_dict(suite_json) if suite_json is not None else None)
    # Only the columns the checks read (e.g. not the long address text a Parquet holds but no check uses).
    df = _frame(data, _columns_needed(planned, schema))
    if len(df.columns) < len(schema.names):
        _require_present(data, schema)
    else:
        _require_columns(df, schema)
    results: list[CheckResult | None] = [None] * len(planned)
    slow = [(i, p) for i, p in enumerate(planned) if p.expectation_type not in FAST_TYPES]
    for i, p in enumerate(planned):
        if p.expectation_type in FAST_TYPES:
            results[i] = run_fast(df, p, schema, mask or default_mask, sample_size)
    if slow:
        raw = gxmod.validate(df, [p.gx_dict() for _, p in slow], name=suite_name or "declared")
        for (i, p), r in zip(slow, raw, strict=True):
            results[i] = _from_gx(p, r, df, schema, mask or default_mask)
    checks = [r for r in results if r is not None]
    return summarise(len(df), checks, engine="fast", suite_name=suite_name, seconds=time.perf_counter() - t0)


def run_gx_only(
    data: str | Path | pd.DataFrame | pa.Table,
    *,
    schema: Schema,
    tag_checks: dict[str, list[dict[str, Any]]],
    suite_json: str | dict[str, Any] | None = None,
    mask: Mask | None = None,
) -> QualityReport:
    """The same plan validated by GX alone with built-in expectations (the benchmark baseline)."""
    t0 = time.perf_counter()
    df = _frame(data)
    _require_columns(df, schema)
    planned = plan(schema, tag_checks, gxmod.suite_dict(suite_json) if suite_json is not None else None)
    pairs = [(p, g) for p in planned for g in to_gx_builtin(p)]
    raw = gxmod.validate(df, [g for _, g in pairs], name="gx-only")
    checks = [_from_gx(p, r, df, schema, mask or default_mask) for (p, _), r in zip(pairs, raw, strict=True)]
    return summarise(len(df), checks, engine="gx", suite_name="gx-only", seconds=time.perf_counter() - t0)


def _require_present(data: str | Path | pd.DataFrame | pa.Table, schema: Schema) -> None:
    names = data.columns if isinstance(data, pd.DataFrame | pa.Table) else pq.read_schema(data).names
    _require_columns(pd.DataFrame(columns=list(names)), schema)


def _require_columns(df: pd.DataFrame, schema: Schema) -> None:
    missing = [n for n in schema.names if n not in df.columns]
    if missing:
        raise Invalid(f"the data lacks registered columns {missing[:10]}: ingest it against the schema first")


def _from_gx(p: Planned, r: dict[str, Any], df: pd.DataFrame, schema: Schema, mask: Mask) -> CheckResult:
    res = r.get("result") or {}
    exc = (r.get("exception_info") or {}).get("exception_message")
    idx = [int(i) for i in (res.get("partial_unexpected_index_list") or []) if isinstance(i, int)]
    samples = _samples(df, idx, p.column, schema, mask)
    return CheckResult(
        check=p.check,
        expectation_type=r["expectation_config"]["type"],
        kwargs=p.kwargs,
        source=p.source,
        severity=p.severity,
        mostly=p.mostly,
        passed=bool(r.get("success")),
        element_count=int(res.get("element_count") or len(df)),
        missing_count=int(res.get("missing_count") or 0),
        unexpected_count=int(res.get("unexpected_count") or 0),
        unexpected_percent=round(float(res.get("unexpected_percent") or 0.0), 6),
        samples=samples,
        exception=str(exc)[:300] if exc else None,
    )


def _samples(
    df: pd.DataFrame, idx: list[int], column: str | None, schema: Schema, mask: Mask
) -> list[FailingRow]:
    """Failing rows by number and key, values masked by their field's tag (never raw in the report)."""
    if not idx:
        return []
    key = schema.key
    keys = mask(schema.field(key).tag, df[key].iloc[idx]).tolist() if key else [None] * len(idx)
    vals: list[Any] = [None] * len(idx)
    if column and column in df.columns and column in schema.names:
        vals = mask(schema.field(column).tag, df[column].iloc[idx].astype("string")).tolist()
    return [
        FailingRow(row=i + 1, key=None if pd.isna(k) else str(k), value=None if pd.isna(v) else str(v))
        for i, k, v in zip(idx, keys, vals, strict=True)
    ]
