"""Output control: what of a sandbox result may leave (k individuals per group, suppression, budget)."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from sqlglot import exp
from sqlglot.optimizer.scope import Scope, build_scope

from sandbox.budget import GrantBudget, ReleasedQuery, differencing_conflicts
from sandbox.runner import QueryResult
from sandbox.sqlguard import GuardedQuery, OutputColumn, aggregates_in

K_COLUMN = "__pdg_k"  # individuals per group, added by plan_query and removed before release
_ID_PREFIX = "__pdg_id_"

DIRECT_IDENTIFIER_TAGS = frozenset(
    {
        "id_number",
        "person_name",
        "phone",
        "certificate_no",
        "bank_card",
        "email",
        "usc_code_personal",
        "passport_no",
        "license_plate",
        "social_security_no",
    }
)
QUASI_IDENTIFIER_TAGS = frozenset({"birth_date", "address", "geo_point", "free_text"})
VALUE_REVEALING = frozenset({"min", "max", "median", "quantile_cont"})  # each returns one person's value
COUNTING = frozenset({"count", "count_if"})


@dataclass(frozen=True)
class OutputRules:
    """Release rules, normally built from the policies for a grant."""

    k: int = 10
    aggregate_only: bool = True
    allowed_aggregates: frozenset[str] = frozenset(
        {
            "count",
            "count_if",
            "sum",
            "avg",
            "min",
            "max",
            "median",
            "stddev",
            "stddev_samp",
            "stddev_pop",
            "variance",
            "var_pop",
        }
    )
    direct_identifier_tags: frozenset[str] = DIRECT_IDENTIFIER_TAGS
    quasi_identifier_tags: frozenset[str] = QUASI_IDENTIFIER_TAGS
    max_rows: int = 1_000
    secondary_suppression: bool = True
    rounding_base: int = 0  # e.g. 5: counts are released rounded to the nearest multiple
    near_limit_ratio: float = 0.8


@dataclass(frozen=True)
class OutputPlan:
    """The SQL to run (guarded SQL plus individuals per group), or why the query can't be released."""

    sql: str | None
    reasons: tuple[str, ...] = ()
    # (table, identity column) pairs the k count reads: the worker loads these besides the query's columns
    k_reads: frozenset[tuple[str, str]] = frozenset()


@dataclass
class OutputDecision:
    """Whether anything leaves, what (with small groups removed), and the reasons the requester sees."""

    released: bool
    table: pa.Table | None = field(repr=False)
    reasons: list[str]
    suppressed_cells: int = 0
    flags: list[str] = field(default_factory=list)


Tags = dict[str, dict[str, str]]  # table -> column -> field tag


def _tag(tags: Tags, source: str) -> str | None:
    table, _, col = source.partition(".")
    return tags.get(table, {}).get(col)


def static_reasons(guarded: GuardedQuery, rules: OutputRules, field_tags: Tags) -> list[str]:
    """Reasons the query's shape can never be released, whatever its result."""
    reasons = []
    identifying = rules.direct_identifier_tags | rules.quasi_identifier_tags
    for col in guarded.output_columns:
        direct = sorted(s for s in col.sources if _tag(field_tags, s) in rules.direct_identifier_tags)
        if (col.row_level or col.group_key) and direct:
            reasons.append(f"output column '{col.name}' derives from direct identifier {direct[0]}")
        if col.row_level or not (col.aggregate or col.group_key):
            if rules.aggregate_only:
                reasons.append(
                    f"output column '{col.name}' is row-level data; only aggregates and "
                    "their GROUP BY keys may leave the sandbox"
                )
            elif any(_tag(field_tags, s) in identifying for s in col.sources):
                reasons.append(f"row-level output column '{col.name}' derives from an identifying column")
        for fn, inputs in col.agg_inputs:
            tags = {_tag(field_tags, s) for s in inputs}
            if fn in VALUE_REVEALING and tags & identifying:
                reasons.append(
                    f"{fn}() reveals one individual's value and is not allowed on identifying "
                    f"columns (output '{col.name}')"
                )
            elif fn not in COUNTING and tags & rules.direct_identifier_tags:
                reasons.append(f"only counting is allowed on direct identifiers (output '{col.name}')")
    for fn in sorted(guarded.aggregates_used - rules.allowed_aggregates):
        reasons.append(f"aggregate function {fn}() is not allowed by the output rules for this grant")
    return list(dict.fromkeys(reasons))


def _row_level_allowed(guarded: GuardedQuery, rules: OutputRules) -> bool:
    return not rules.aggregate_only and any(c.row_level for c in guarded.output_columns)


def plan_query(
    guarded: GuardedQuery,
    *,
    rules: OutputRules,
    identity_column_per_table: dict[str, str],
    field_tags: Tags,
    unique_identity: frozenset[str] = frozenset(),
    required_identity: frozenset[str] = frozenset(),
) -> OutputPlan:
    """Rewrite the guarded query to also return COUNT(DISTINCT identity) per group, as column __pdg_k.

    `unique_identity` names tables whose identity column is declared unique: aggregated alone (no join,
    no derived source) each row is one individual, so a plain COUNT gives the same k far cheaper — and
    COUNT(*), which need not read the column at all, where `required_identity` says it is never null
    (both are enforced by the quality gate at publish). An inner join on equal identity columns counts
    one of them: the equality makes their distinct counts the same per group.
    """
    reasons = static_reasons(guarded, rules, field_tags)
    if reasons:
        return OutputPlan(None, tuple(reasons))
    if _row_level_allowed(guarded, rules):
        return OutputPlan(guarded.sql)
    tree = guarded.tree.copy()
    scope = build_scope(tree)
    reads: set[tuple[str, str]] = set()
    try:
        _add_k(
            scope,
            {t.lower(): c.lower() for t, c in identity_column_per_table.items()},
            {t.lower() for t in unique_identity},
            {t.lower() for t in required_identity},
            reads,
        )
    except _Unsupported as e:
        return OutputPlan(None, (str(e),))
    return OutputPlan(tree.sql(dialect="duckdb", comments=False), k_reads=frozenset(reads))


def columns_to_load(guarded: GuardedQuery, plan: OutputPlan, identity: dict[str, str]) -> dict[str, set[str]]:
    """Per table the query uses: the columns it reads, plus the identity column where the k count reads it."""
    out: dict[str, set[str]] = {t: set() for t in guarded.tables}
    for ref in guarded.columns_read:
        table, _, column = ref.partition(".")
        out[table].add(column)
    counted = {t for t, _ in plan.k_reads}
    for t in out:
        # also where the query reads no column at all (count(*)): DuckDB can't scan a table of none
        if t in identity and (t.lower() in counted or not out[t]):
            out[t].add(identity[t])
    return out


class _Unsupported(Exception):
    pass


def _add_k(
    scope: Scope | None,
    identity: dict[str, str],
    unique: set[str],
    required: set[str],
    reads: set[tuple[str, str]],
) -> None:
    """Find the aggregating SELECT (outermost, or under plain outer SELECTs) and add the k count to it;
    `reads` collects the (table, identity column) pairs the count uses."""
    chain = []
    while scope is not None:
        sel = scope.expression
        if not isinstance(sel, exp.Select):
            raise _Unsupported("UNION/INTERSECT/EXCEPT results can't be checked per group; run each part alone")
        if sel.args.get("group") or _has_own_agg(scope):
            break
        selected = {name: src for name, (_, src) in scope.selected_sources.items()}
        derived = [s for s in selected.values() if isinstance(s, Scope)]
        if len(selected) != 1 or len(derived) != 1 or sel.args.get("distinct"):
            raise _Unsupported("put the aggregation in the outermost query (or under plain SELECTs over it)")
        chain.append((sel, next(iter(selected))))
        scope = derived[0]
    if scope is None:
        raise _Unsupported("no aggregation found")
    ids: list[tuple[exp.Column, tuple[str, str]]] = []
    for alias, (_, src) in scope.selected_sources.items():
        ids.extend(_identity_exprs(alias, src, identity))
    if not ids:
        raise _Unsupported("no identity column is reachable in the aggregated tables, so group sizes can't be counted")
    sources = list(scope.selected_sources.values())
    only = sources[0][1].name.lower() if len(sources) == 1 and isinstance(sources[0][1], exp.Table) else None
    if only in unique and only in required:  # one row per individual, never without one: rows are individuals
        counts: list[exp.Expr] = [exp.Count(this=exp.Star())]
    elif only in unique:  # one row per individual: COUNT(id) == COUNT(DISTINCT id), without the hash table
        counts = [exp.Count(this=e) for e, _ in ids]
        reads.update(r for _, r in ids)
    else:
        ids = _one_per_equated_class(scope.expression, ids)
        counts = [exp.Count(this=exp.Distinct(expressions=[e])) for e, _ in ids]
        reads.update(r for _, r in ids)
    k_expr = counts[0] if len(counts) == 1 else exp.Least(this=counts[0], expressions=counts[1:])
    scope.expression.select(exp.alias_(k_expr, K_COLUMN, quoted=True), copy=False)
    for outer, alias in chain:  # carry the count out through the plain outer SELECTs
        outer.select(exp.column(K_COLUMN, table=alias, quoted=True), copy=False)


def _has_own_agg(scope: Scope) -> bool:
    return any(aggregates_in(p, scope) for p in scope.expression.expressions)


def _one_per_equated_class(
    sel: exp.Expr, ids: list[tuple[exp.Column, tuple[str, str]]]
) -> list[tuple[exp.Column, tuple[str, str]]]:
    """Drop identity columns an inner join (or the WHERE clause) makes equal to one already counted.

    `a.id = b.id` in an INNER join's ON or a top-level AND of WHERE keeps only rows where both are equal
    and not null, so per group COUNT(DISTINCT a.id) == COUNT(DISTINCT b.id). Outer joins are left alone.
    """
    conds = [sel.args["where"].this] if sel.args.get("where") else []
    for j in sel.args.get("joins") or []:
        if j.args.get("on") is not None and not j.side and j.kind in ("", "INNER"):
            conds.append(j.args["on"])
    equal: set[frozenset[tuple[str, str]]] = set()
    for cond in conds:
        for part in cond.flatten() if isinstance(cond, exp.And) else [cond]:
            if isinstance(part, exp.EQ) and all(isinstance(x, exp.Column) for x in (part.this, part.expression)):
                equal.add(frozenset(_ref(x) for x in (part.this, part.expression)))
    kept: list[tuple[exp.Column, tuple[str, str]]] = []
    for e, r in ids:
        if not any(frozenset({_ref(e), _ref(k)}) in equal for k, _ in kept):
            kept.append((e, r))
    return kept


def _ref(c: exp.Column) -> tuple[str, str]:
    return c.table.lower(), c.name.lower()


def _identity_exprs(
    alias: str, src: exp.Table | Scope, identity: dict[str, str]
) -> list[tuple[exp.Column, tuple[str, str]]]:
    """Identity columns reachable through source `alias` (each with the table and column it comes from),
    threading them through plain CTEs/subqueries."""
    if isinstance(src, exp.Table):
        col = identity.get(src.name.lower())
        return [(exp.column(col, table=alias, quoted=True), (src.name.lower(), col))] if col else []
    sel = src.expression
    if not isinstance(sel, exp.Select) or sel.args.get("group") or sel.args.get("distinct") or _has_own_agg(src):
        return []  # an aggregated or DISTINCT source no longer holds one row per individual
    out = []
    for inner_alias, (_, inner) in src.selected_sources.items():
        for e, r in _identity_exprs(inner_alias, inner, identity):
            name = f"{_ID_PREFIX}{len(sel.expressions)}"
            sel.select(exp.alias_(e, name, quoted=True), copy=False)
            out.append((exp.column(name, table=alias, quoted=True), r))
    return out


def check_output(
    result: QueryResult,
    guarded: GuardedQuery,
    *,
    rules: OutputRules,
    identity_column_per_table: dict[str, str],
    field_tags: Tags,
    grant_budget: GrantBudget,
) -> OutputDecision:
    """Decide what of `result` (from plan_query's SQL) may leave; updates `grant_budget` in place."""
    budget = grant_budget
    if budget.queries_used >= budget.max_queries:
        return _refuse([f"the grant's query budget ({budget.max_queries}) is used up; ask for a new grant"])
    budget.queries_used += 1
    reasons = static_reasons(guarded, rules, field_tags)
    if result.truncated or result.rows_returned > rules.max_rows:
        reasons.append(f"the result has more than {rules.max_rows} rows; aggregate to fewer groups")
    if reasons:
        return _refuse(reasons, budget, rules)
    table = result.table
    if _row_level_allowed(guarded, rules):
        return _release(table, [], 0, budget, rules, None)
    if K_COLUMN not in table.column_names:
        return _refuse(["the result carries no group sizes; run the SQL from plan_query"], budget, rules)
    keys = [c for c in guarded.output_columns if c.group_key]
    key_names = [c.name for c in keys]
    k_values = [int(v or 0) for v in table.column(K_COLUMN).to_pylist()]
    key_rows = [tuple(r) for r in zip(*(table.column(n).to_pylist() for n in key_names), strict=True)]
    if not keys:
        key_rows = [() for _ in k_values]
    small = {i for i, n in enumerate(k_values) if n < rules.k}
    notes = []
    if small and not keys:
        return _refuse([f"the result covers fewer than {rules.k} individuals"], budget, rules)
    secondary = _secondary(key_rows, k_values, small) if rules.secondary_suppression and small else set()
    if small:
        notes.append(f"{len(small)} group(s) with fewer than {rules.k} individuals were suppressed")
    if secondary:
        notes.append(f"{len(secondary)} more group(s) were suppressed so the small ones can't be recovered from totals")
    release = ReleasedQuery(
        seq=budget.next_seq(),
        digest=guarded.digest,
        tables=sorted(guarded.tables),
        group_keys=_key_ids(keys),
        groups=[[list(_jsonable(key_rows[i])), k_values[i]] for i in range(len(k_values))],
        filters=list(guarded.filters),
    )
    conflicts = differencing_conflicts(budget, release, rules.k)
    if conflicts:
        return _refuse(conflicts, budget, rules)
    hidden = small | secondary
    keep = [i for i in range(table.num_rows) if i not in hidden]
    out = table.take(pa.array(keep, type=pa.int64())).drop_columns([K_COLUMN])
    suppressed_cells = len(hidden) * out.num_columns
    if rules.rounding_base > 1:
        out = _round_counts(out, guarded.output_columns, rules.rounding_base)
        notes.append(f"counts are rounded to the nearest multiple of {rules.rounding_base}")
    return _release(out, notes, suppressed_cells, budget, rules, release)


def _release(
    out: pa.Table,
    notes: list[str],
    suppressed: int,
    budget: GrantBudget,
    rules: OutputRules,
    release: ReleasedQuery | None,
) -> OutputDecision:
    cells = out.num_rows * out.num_columns
    if budget.cells_released + cells > budget.max_released_cells:
        return _refuse(
            [
                f"releasing {cells} cells would pass the budget of "
                f"{budget.max_released_cells} cells ({budget.cells_left} left)"
            ],
            budget,
            rules,
        )
    if release is not None:
        budget.record(release, cells)
    else:
        budget.cells_released += cells
    flags = (["suppressed"] if suppressed else []) + (
        ["near_limit"] if budget.near_limit(rules.near_limit_ratio) else []
    )
    return OutputDecision(True, out, notes or ["released"], suppressed, flags)


def _refuse(reasons: list[str], budget: GrantBudget | None = None, rules: OutputRules | None = None) -> OutputDecision:
    near = budget is not None and rules is not None and budget.near_limit(rules.near_limit_ratio)
    return OutputDecision(False, None, reasons, 0, ["near_limit"] if near else [])


def _key_ids(keys: list[OutputColumn]) -> list[str]:
    """Name group keys by their base sources, not aliases, so renaming a key doesn't dodge comparison."""
    ids: list[str] = []
    for c in keys:
        base = ",".join(sorted(c.sources)) or "constant"
        ids.append(base if base not in ids else f"{base}#{len(ids)}")
    return ids


def _secondary(keys: list[tuple[Any, ...]], counts: list[int], small: set[int]) -> set[int]:
    """Suppress more groups until no margin line has exactly one hidden group (so totals can't reveal it)."""
    hidden = set(small)
    dims = len(keys[0]) if keys else 0
    changed = True
    while changed:
        changed = False
        for d in range(dims):
            lines: dict[tuple[Any, ...], list[int]] = defaultdict(list)
            for i, key in enumerate(keys):
                lines[key[:d] + key[d + 1 :]].append(i)
            for members in lines.values():
                shown = [i for i in members if i not in hidden]
                if len(members) - len(shown) == 1 and shown:
                    hidden.add(min(shown, key=lambda i: counts[i]))
                    changed = True
    return hidden - small


def _round_counts(table: pa.Table, outputs: tuple[OutputColumn, ...], base: int) -> pa.Table:
    for col in outputs:
        if col.aggregate and col.functions and col.functions <= COUNTING and col.name in table.column_names:
            vals = [None if v is None else int(base * round(v / base)) for v in table.column(col.name).to_pylist()]
            idx = table.column_names.index(col.name)
            table = table.set_column(idx, col.name, pa.array(vals, type=pa.int64()))
    return table


def _jsonable(values: tuple[Any, ...]) -> list[Any]:
    return [v if isinstance(v, str | int | float | bool | type(None)) else json.dumps(v, default=str) for v in values]
