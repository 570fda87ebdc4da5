"""SQL guard: parse sandbox SQL with sqlglot; allow only one read-only SELECT on granted columns."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp
from sqlglot.errors import OptimizeError, ParseError, SqlglotError
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, build_scope

from common.errors import Invalid
from gmcrypto import sm3

MAX_SQL_CHARS = 20_000
MAX_NODES = 5_000
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Aggregates a sandbox query may use. Order statistics reveal one individual's value, so output control
# allows them only on non-identifying columns (see output_control.VALUE_REVEALING).
AGGREGATES: dict[type[exp.Expr], str] = {
    exp.Count: "count",
    exp.CountIf: "count_if",
    exp.Sum: "sum",
    exp.Avg: "avg",
    exp.Min: "min",
    exp.Max: "max",
    exp.Median: "median",
    exp.PercentileCont: "quantile_cont",
    exp.Stddev: "stddev",
    exp.StddevSamp: "stddev_samp",
    exp.StddevPop: "stddev_pop",
    exp.Variance: "variance",
    exp.VariancePop: "var_pop",
}
# Scalar functions: pure, deterministic, no I/O, no catalog or settings access.
SCALARS: frozenset[type[exp.Expr]] = frozenset(
    {
        exp.Abs,
        exp.Round,
        exp.Floor,
        exp.Ceil,
        exp.Sign,
        exp.Sqrt,
        exp.Ln,
        exp.Pow,
        exp.Coalesce,
        exp.Nullif,
        exp.Greatest,
        exp.Least,
        exp.If,
        exp.Case,
        exp.Cast,
        exp.TryCast,
        exp.Lower,
        exp.Upper,
        exp.Length,
        exp.Substring,
        exp.Trim,
        exp.Concat,
        exp.DPipe,
        exp.Left,
        exp.Right,
        exp.Replace,
        exp.StartsWith,
        exp.Like,
        exp.ILike,
        exp.Extract,
        exp.Year,
        exp.Month,
        exp.Day,
        exp.Quarter,
        exp.TimestampTrunc,
        exp.DateTrunc,
        exp.DateDiff,
        exp.DateAdd,
        exp.DateSub,
        exp.DateFromParts,
        exp.TimeToStr,
        exp.StrToDate,
        exp.CurrentDate,
        exp.Interval,
    }
)
# Grammar nodes of a plain SELECT. Anything else (DDL, DML, COPY, PRAGMA, windows, lambdas...) is refused.
STRUCTURE: frozenset[type[exp.Expr]] = frozenset(
    {
        exp.Select,
        exp.Union,
        exp.Intersect,
        exp.Except,
        exp.With,
        exp.CTE,
        exp.TableAlias,
        exp.Subquery,
        exp.From,
        exp.Join,
        exp.Table,
        exp.Identifier,
        exp.Column,
        exp.Star,
        exp.Alias,
        exp.Where,
        exp.Group,
        exp.Having,
        exp.Order,
        exp.Ordered,
        exp.Limit,
        exp.Offset,
        exp.Distinct,
        exp.Paren,
        exp.Tuple,
        exp.Literal,
        exp.Boolean,
        exp.Null,
        exp.DataType,
        exp.DataTypeParam,
        exp.Filter,
        exp.Exists,
        exp.In,
        exp.Between,
        exp.Is,
        exp.Not,
        exp.Neg,
        exp.And,
        exp.Or,
        exp.EQ,
        exp.NEQ,
        exp.GT,
        exp.GTE,
        exp.LT,
        exp.LTE,
        exp.NullSafeEQ,
        exp.NullSafeNEQ,
        exp.Add,
        exp.Sub,
        exp.Mul,
        exp.Div,
        exp.IntDiv,
        exp.Mod,
        exp.Var,
    }
)
_UNITS = frozenset(
    [
        "year",
        "years",
        "month",
        "months",
        "day",
        "days",
        "quarter",
        "week",
        "weeks",
        "hour",
        "hours",
        "minute",
        "minutes",
        "second",
        "seconds",
        "dow",
        "doy",
        "isodow",
        "decade",
        "century",
    ]
)
_TABLE_FUNCS = re.compile(r"^(read_|scan_|parquet_|glob$|sniff_|iceberg|delta_|query|range$|generate_series)")
_CATALOG_FUNCS = re.compile(
    r"^(duckdb_|pragma_|pg_|sqlite_|information_schema|current_setting|getenv|setting)"
)
_CATALOG_SCHEMAS = frozenset({"information_schema", "pg_catalog", "main", "system", "temp", "memory"})


@dataclass(frozen=True)
class OutputColumn:
    """An output column and where it comes from: base `table.column` sources and aggregate functions."""

    name: str
    sources: frozenset[str]
    aggregate: bool  # value computed by an aggregate function
    group_key: bool  # value of a GROUP BY key of an aggregating query
    row_level: bool  # value taken from single rows of granted data
    functions: frozenset[str] = frozenset()
    # (aggregate function, base sources of its argument), e.g. ("max", {"population.birth_date"})
    agg_inputs: tuple[tuple[str, frozenset[str]], ...] = ()


@dataclass(frozen=True)
class GuardedQuery:
    """A validated query: regenerated SQL plus what it reads and what each output column derives from."""

    sql: str
    tables: tuple[str, ...]
    columns_read: frozenset[str]
    output_columns: tuple[OutputColumn, ...]
    aggregates_used: frozenset[str]
    group_by: tuple[str, ...]  # output column names that are group keys
    filters: tuple[str, ...]  # WHERE/HAVING conjuncts (regenerated SQL), for the budget's signatures
    digest: str  # SM3 of `sql`, hex
    tree: exp.Expr = field(repr=False, compare=False)  # the qualified AST (output control rewrites a copy)


def _refuse(reason: str) -> Invalid:
    return Invalid(f"query refused: {reason}", extra={"rule": "sqlguard"})


def guard(sql: str, granted: dict[str, set[str]]) -> GuardedQuery:
    """Validate `sql` against `granted` (table -> granted columns); raise Invalid saying why if unsafe."""
    if not isinstance(sql, str) or not sql.strip():
        raise _refuse("empty query; send one SELECT statement")
    if len(sql) > MAX_SQL_CHARS:
        raise _refuse(f"query longer than {MAX_SQL_CHARS} characters")
    if any(ord(c) < 32 and c not in "\t\n\r" for c in sql):
        raise _refuse("control characters are not allowed in SQL text")
    try:
        statements = [s for s in sqlglot.parse(sql, read="duckdb") if s is not None]
    except ParseError as e:
        raise _refuse(f"could not parse as DuckDB SQL ({_first_line(e)})") from None
    except (SqlglotError, RecursionError):
        raise _refuse("could not parse as DuckDB SQL (too deeply nested or malformed)") from None
    if len(statements) != 1:
        raise _refuse(f"exactly one statement is allowed, got {len(statements)} (no stacked statements)")
    tree = statements[0]
    if not isinstance(tree, exp.Select | exp.SetOperation):
        kind = type(tree).__name__.upper()
        raise _refuse(f"only read-only SELECT queries are allowed, not {kind}")
    nodes = list(tree.walk())
    if len(nodes) > MAX_NODES:
        raise _refuse(f"query too complex ({len(nodes)} syntax nodes, limit {MAX_NODES})")
    granted_lc = {t.lower(): {c.lower() for c in cols} for t, cols in granted.items()}
    cte_names = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    for node in nodes:
        _check_node(node, granted_lc, cte_names)
    for t in tree.find_all(exp.Table):
        name = t.name.lower()
        if name not in granted_lc and name not in cte_names:
            raise _refuse(
                f"table '{t.name}' is not granted to you (granted: {', '.join(sorted(granted_lc))})"
            )
    schema = {t: dict.fromkeys(sorted(cols), "UNKNOWN") for t, cols in granted_lc.items()}
    try:
        qualified = qualify(tree, schema=schema, dialect="duckdb", expand_stars=True, identify=True)
    except OptimizeError as e:
        raise _refuse(f"{_first_line(e)}; only granted columns of granted tables can be used") from None
    except (SqlglotError, RecursionError, KeyError, ValueError):
        raise _refuse("could not resolve the query's columns against the granted tables") from None
    return _analyse(qualified, granted_lc)


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0][:200] if str(e) else type(e).__name__


def _check_node(node: exp.Expr, granted: dict[str, set[str]], ctes: set[str]) -> None:
    """Refuse one syntax node unless it is on the allowlist; name the rule it breaks."""
    cls = type(node)
    if isinstance(node, exp.With) and node.args.get("recursive"):
        raise _refuse("recursive CTEs are not allowed")
    if isinstance(node, exp.Table):
        _check_table(node)
        return
    if isinstance(node, exp.Identifier):
        _check_identifier(node.name, granted, ctes)
        return
    if isinstance(node, exp.Var):
        if (
            not isinstance(
                node.parent,
                exp.Extract
                | exp.TimestampTrunc
                | exp.DateTrunc
                | exp.DateDiff
                | exp.Interval
                | exp.DateAdd
                | exp.DateSub,
            )
            or node.name.lower() not in _UNITS
        ):
            raise _refuse(f"unexpected bare word '{node.name[:40]}'")
        return
    if isinstance(node, exp.Join) and (node.args.get("method") or "").upper() in {"ASOF", "POSITIONAL"}:
        raise _refuse("ASOF and POSITIONAL joins are not allowed")
    if cls in STRUCTURE or cls in SCALARS or cls in AGGREGATES:
        return
    if isinstance(node, exp.Anonymous | exp.Func):
        name = node.name.lower() if isinstance(node, exp.Anonymous) else node.sql_name().lower()
        if _CATALOG_FUNCS.match(name):
            raise _refuse(f"function '{name}' reads system catalogs or settings and is not allowed")
        if _TABLE_FUNCS.match(name):
            raise _refuse(f"function '{name}' reads files or generates tables and is not allowed")
        if isinstance(node, exp.Window) or node.find_ancestor(exp.Window):
            raise _refuse("window functions are not allowed (use GROUP BY)")
        raise _refuse(f"function '{name}' is not in the sandbox allowlist (see docs/sandbox.md)")
    if isinstance(node, exp.Window):
        raise _refuse("window functions are not allowed (use GROUP BY)")
    raise _refuse(f"SQL construct {cls.__name__.upper()} is not allowed in sandbox queries")


def _check_table(t: exp.Table) -> None:
    target = t.this
    if not isinstance(target, exp.Identifier):
        if isinstance(target, exp.Anonymous):
            name = target.name.lower()
        else:
            name = (
                target.sql_name().lower() if isinstance(target, exp.Func) else type(target).__name__.lower()
            )
        what = "system catalog" if _CATALOG_FUNCS.match(name) else "table function"
        raise _refuse(
            f"{what} '{name}' in FROM is not allowed (files, URLs and generated tables are refused)"
        )
    if target.quoted and not _IDENT.match(target.name):
        raise _refuse("quoted string table references (file paths, URLs) are not allowed")
    if t.args.get("db") or t.args.get("catalog"):
        schema = (t.args.get("db") or t.args.get("catalog")).name.lower()
        if schema in _CATALOG_SCHEMAS or schema.startswith("pg_"):
            raise _refuse(f"system catalog '{schema}' is not allowed")
        raise _refuse("schema- or database-qualified table names are not allowed; use the granted names")
    for arg in ("joins", "pivots", "sample", "version", "when", "changes", "laterals", "hints", "partition"):
        if t.args.get(arg):
            raise _refuse(f"table modifier {arg.upper()} is not allowed")


def _check_identifier(name: str, granted: dict[str, set[str]], ctes: set[str]) -> None:
    if name.lower().startswith("__pdg"):
        raise _refuse("names starting with __pdg are reserved for the sandbox")
    if _IDENT.match(name):
        return
    if name.lower() in granted or any(name.lower() in cols for cols in granted.values()):
        return  # a granted name that happens not to be snake_case, written exactly
    if any(ord(c) > 127 for c in name):
        raise _refuse(
            "identifier with non-ASCII characters (possible look-alike); use ASCII snake_case names"
        )
    raise _refuse("identifiers must be ASCII letters, digits and underscores, or exactly a granted name")


# ---- lineage -------------------------------------------------------------------------------------------


def _resolve(scope: Scope, table: str) -> exp.Table | Scope | None:
    """Find the source named `table` in `scope` or an enclosing scope (correlated subqueries)."""
    s: Scope | None = scope
    while s is not None:
        if table in s.sources:
            return s.sources[table]
        s = s.parent
    return None


class _Lineage:
    """Per-scope analysis of output columns; memoised because CTEs are referenced many times."""

    def __init__(self, granted: dict[str, set[str]]) -> None:
        self.granted = granted
        self.memo: dict[int, list[OutputColumn]] = {}
        self.columns_read: set[str] = set()

    def outputs(self, scope: Scope) -> list[OutputColumn]:
        key = id(scope.expression)
        if key not in self.memo:
            self.memo[key] = self._compute(scope)
        return self.memo[key]

    def _compute(self, scope: Scope) -> list[OutputColumn]:
        if isinstance(scope.expression, exp.SetOperation):
            left, right = (self.outputs(s) for s in scope.set_operation_scopes[:2])
            return [_merge(a.name, [a, b]) for a, b in zip(left, right, strict=False)]
        select = scope.expression
        assert isinstance(select, exp.Select)
        aggregating = bool(select.args.get("group")) or any(
            aggregates_in(p, scope) for p in select.expressions
        )
        outs = []
        for proj in select.expressions:
            outs.append(self._column(scope, proj, aggregating))
        return outs

    def _column(self, scope: Scope, proj: exp.Expr, aggregating: bool) -> OutputColumn:
        name = proj.alias_or_name
        sources: set[str] = set()
        derived: list[OutputColumn] = []
        direct_base = False
        for col in _columns_in(proj, scope):
            src = self.source_of(scope, col)
            if isinstance(src, str):
                sources.add(src)
                direct_base = True
            elif src is not None:
                sources |= src.sources
                derived.append(src)
        aggs = aggregates_in(proj, scope)
        agg_inputs = []
        for a in aggs:
            arg_sources: set[str] = set()
            for col in _columns_in(a, scope):
                src = self.source_of(scope, col)
                arg_sources |= {src} if isinstance(src, str) else (src.sources if src else set())
            agg_inputs.append((AGGREGATES[type(a)], frozenset(arg_sources)))
        has_subquery = any(True for _ in proj.find_all(exp.Subquery, exp.Exists))
        funcs = {AGGREGATES[type(a)] for a in aggs} | {f for d in derived for f in d.functions}
        inherited = tuple(x for d in derived for x in d.agg_inputs)
        if aggregating:
            return OutputColumn(
                name,
                frozenset(sources),
                bool(aggs),
                not aggs,
                has_subquery,
                frozenset(funcs),
                tuple(agg_inputs) + inherited,
            )
        row_level = direct_base or has_subquery or any(d.row_level for d in derived)
        agg = bool(derived) and any(d.aggregate for d in derived) and not row_level
        key = bool(derived) and all(d.group_key for d in derived) and not row_level
        return OutputColumn(name, frozenset(sources), agg, key, row_level, frozenset(funcs), inherited)

    def source_of(self, scope: Scope, col: exp.Column) -> str | OutputColumn | None:
        """Base `table.column` for a column of a granted table, or the derived column it reads."""
        src = _resolve(scope, col.table)
        if isinstance(src, exp.Table):
            ref = f"{src.name.lower()}.{col.name.lower()}"
            if col.name.lower() not in self.granted.get(src.name.lower(), set()):
                raise _refuse(f"column '{col.name}' of table '{src.name}' is not granted to you")
            self.columns_read.add(ref)
            return ref
        if isinstance(src, Scope):
            for out in self.outputs(src):
                if out.name.lower() == col.name.lower():
                    return out
        return None


def _in_scope(node: exp.Expr, scope: Scope) -> bool:
    """True when `node` belongs to `scope` itself, not to a nested subquery."""
    p = node.parent
    while p is not None and p is not scope.expression:
        if isinstance(p, exp.Select | exp.SetOperation):
            return False
        p = p.parent
    return True


def _columns_in(expr: exp.Expr, scope: Scope) -> list[exp.Column]:
    return [c for c in expr.find_all(exp.Column) if _in_scope(c, scope)]


def aggregates_in(expr: exp.Expr, scope: Scope) -> list[exp.Expr]:
    """Aggregate calls in `expr` that belong to `scope` (not to nested subqueries)."""
    return [a for a in expr.find_all(*AGGREGATES) if _in_scope(a, scope)]


def _merge(name: str, cols: list[OutputColumn]) -> OutputColumn:
    return OutputColumn(
        name,
        frozenset().union(*(c.sources for c in cols)),
        all(c.aggregate for c in cols),
        all(c.group_key for c in cols),
        any(c.row_level for c in cols),
        frozenset().union(*(c.functions for c in cols)),
        tuple(x for c in cols for x in c.agg_inputs),
    )


def _analyse(tree: exp.Expr, granted: dict[str, set[str]]) -> GuardedQuery:
    root = build_scope(tree)
    if root is None:
        raise _refuse("could not analyse the query's structure")
    lineage = _Lineage(granted)
    tables: set[str] = set()
    filters: list[str] = []
    for scope in root.traverse():
        for src in scope.sources.values():
            if isinstance(src, exp.Table):
                tables.add(src.name.lower())
        for col in scope.columns:  # WHERE, JOIN, GROUP BY, HAVING columns count as read too
            lineage.source_of(scope, col)
        lineage.outputs(scope)
        for clause in ("where", "having"):
            node = scope.expression.args.get(clause)
            if node is not None:
                filters.extend(c.sql("duckdb") for c in node.this.flatten() if isinstance(node.this, exp.And))
                if not isinstance(node.this, exp.And):
                    filters.append(node.this.sql("duckdb"))
    unknown = tables - set(granted)
    if unknown:
        raise _refuse(f"table '{sorted(unknown)[0]}' is not granted to you")
    outputs = tuple(lineage.outputs(root))
    if not outputs:
        raise _refuse("the query selects no columns")
    names = [o.name.lower() for o in outputs]
    if len(set(names)) != len(names):
        raise _refuse("output column names must be unique; add aliases (AS name)")
    sql = tree.sql(dialect="duckdb", comments=False)
    return GuardedQuery(
        sql=sql,
        tables=tuple(sorted(tables)),
        columns_read=frozenset(lineage.columns_read),
        output_columns=outputs,
        aggregates_used=frozenset(AGGREGATES[type(a)] for a in tree.find_all(*AGGREGATES)),
        group_by=tuple(o.name for o in outputs if o.group_key),
        filters=tuple(sorted(set(filters))),
        digest=sm3.hexdigest(sql.encode()),
        tree=tree,
    )
