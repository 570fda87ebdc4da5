"""The query service: guard → decide → load granted data → run caged → output control → store → audit.

A read of the grant, then three short write transactions, none held while the query runs (SQLite
takes its write lock at BEGIN):
0. (read only) parse and check the SQL, plan output control — pure Python, no write lock held;
1. authorise `workspace:query` on every dataset read, record the query as running;
2. (no transaction) run the query in a worker process, which decrypts the current versions into memory
   unless it keeps this grant's view of them warm from an earlier query;
   then (read only) apply output control against the grant's budget as last read;
3. re-read the grant and authorise again — a grant revoked or expired meanwhile refuses the result —
   persist the budget (output control is re-done here if another query of the grant moved it meanwhile)
   and the released result, audit the outcome.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from sqlmodel import Session, col, select

from catalog.models import Dataset
from common import clock
from common.actor import Actor
from common.errors import Conflict, Denied, DomainError, Invalid, NotFound
from gmcrypto import sm3
from policies import vocabulary
from sandbox import grants, output_control, sqlguard, workspaces
from sandbox.budget import GrantBudget
from sandbox.models import Grant, Query
from sandbox.runner import Cached, CacheKey, Limits, ParquetBytes, SandboxRunner, Source, TableSource

Uow = Callable[..., AbstractContextManager[Session]]
# Names in the vocabulary's allowed_functions -> the aggregate names the guard reports.
_FUNCTIONS = {
    "count": {"count", "count_if"},
    "stddev": {"stddev", "stddev_samp", "stddev_pop"},
    "quantile": {"quantile_cont"},
    "variance": {"variance", "var_pop"},
}
IDENTITY_TAGS = ("id_number", "usc_code")  # the column whose distinct values count individuals, in order

_RUNNER: SandboxRunner | None = None
_RUNNER_LOCK = threading.Lock()


# The effect record that completes a decided `workspace:query`: rows, output control, budget left.
RESULT_EFFECT = "query:result"


def default_runner() -> SandboxRunner:
    """The process's sandbox runner (one warm worker), started on first use."""
    global _RUNNER
    with _RUNNER_LOCK:
        if _RUNNER is None:
            _RUNNER = SandboxRunner(Limits(), pool_size=2)  # two caged workers per gateway process
        return _RUNNER


def shutdown_runner() -> None:
    """Stop the process's runner (app shutdown, tests)."""
    global _RUNNER
    with _RUNNER_LOCK:
        if _RUNNER is not None:
            _RUNNER.close()
            _RUNNER = None


def output_rules() -> output_control.OutputRules:
    """Output control rules from the policy vocabulary (k, row cap, rounding, functions, identifiers)."""
    oc = vocabulary.default().output_control
    allowed = frozenset().union(*(_FUNCTIONS.get(f, {f}) for f in oc.allowed_functions))
    return output_control.OutputRules(
        k=oc.min_group_size, max_rows=oc.max_rows, rounding_base=oc.rounding_base, allowed_aggregates=allowed,
        direct_identifier_tags=output_control.DIRECT_IDENTIFIER_TAGS | set(oc.join_only_tags)
        | set(oc.never_output_tags))  # fmt: skip


def identity_column(ds: Dataset) -> str | None:
    """The column that identifies an individual (person or legal person) in a dataset."""
    tags = grants.fields_of(ds)
    for wanted in IDENTITY_TAGS:
        for name, tag in tags.items():
            if tag == wanted:
                return name
    return ds.schema_def.get("key")


def _declared(ds: Dataset, column: str, flag: str) -> bool:
    """Whether the registered schema declares `column` unique or required (the quality gate enforces both
    at publish: a version with a duplicate or missing value is rejected)."""
    return any(f.get("name") == column and f.get(flag) for f in ds.schema_def.get("fields", []))


@dataclass
class _Draft:
    """The pure-Python part of a query, worked out from a read of the grant before any write transaction:
    the SQL checked against the granted tables, the columns it reads, and output control's plan."""

    codes: list[str]  # the grant's datasets as read; the write transaction checks they are unchanged
    names: dict[str, str]
    digest: str
    guarded: sqlguard.GuardedQuery | None = None
    refused: Invalid | None = None  # the guard's refusal, decided and audited in the write transaction
    plan: output_control.OutputPlan | None = None
    read: dict[str, list[str]] = field(default_factory=dict)
    grade: dict[str, int] = field(default_factory=dict)
    tags: dict[str, dict[str, str]] = field(default_factory=dict)
    identity: dict[str, str | None] = field(default_factory=dict)


@dataclass
class _Plan:
    """What transaction 1 worked out for the run."""

    grant: Grant
    query: Query
    guarded: sqlguard.GuardedQuery
    sql: str | None
    used: dict[str, Dataset]
    versions: dict[str, Any]
    names: dict[str, str]
    columns: dict[str, set[str]]
    identity: dict[str, str]
    tags: dict[str, dict[str, str]]
    ctx: Callable[[str], Any]


def _draft(s: Session, grant_id: int, sql: str) -> _Draft:
    """Parse, check and plan `sql` against the grant's datasets (reads only; nothing decided or written)."""
    g = grants.get(s, grant_id)
    datasets = grants.datasets_of(s, g.datasets)
    names = grants.table_names(datasets)
    d = _Draft(codes=sorted(datasets), names=names, digest=sm3.hexdigest((sql or "").encode()))
    schema = {t: set(grants.fields_of(datasets[c])) for t, c in names.items()}
    try:
        # Checked against every column: the decision point, not a parse error, refuses ungranted ones.
        d.guarded = sqlguard.guard(sql, schema)
    except Invalid as exc:
        d.refused = exc
        return d
    used = {names[t] for t in d.guarded.tables}
    d.read = {c: [] for c in used}
    for ref in d.guarded.columns_read:
        table, _, column = ref.partition(".")
        d.read[names[table]].append(column)
    d.grade = _output_grades(d.guarded, names, datasets)
    d.tags = {t: grants.fields_of(datasets[c]) for t, c in names.items() if c in used}
    d.identity = {t: identity_column(datasets[c]) for t, c in names.items() if c in used}
    ids = {t: c for t, c in d.identity.items() if c}
    d.plan = output_control.plan_query(
        d.guarded,
        rules=output_rules(),
        identity_column_per_table=ids,
        field_tags=d.tags,
        unique_identity=frozenset(t for t, c in ids.items() if _declared(datasets[names[t]], c, "unique")),
        required_identity=frozenset(t for t, c in ids.items() if _declared(datasets[names[t]], c, "required")),
    )
    return d


def _prepare(s: Session, actor: Actor, grant_id: int, sql: str, d: _Draft) -> _Plan:
    """Transaction 1: decide `workspace:query` on every dataset read (audited), record the query row."""
    g = grants.get(s, grant_id)
    datasets = grants.datasets_of(s, g.datasets)
    if sorted(datasets) != d.codes:  # grants never change their datasets; refuse rather than guess
        raise Conflict(f"grant {grant_id} changed while the query was being checked; run it again")
    if d.refused is not None or d.guarded is None or d.plan is None:
        with grants.authorized_each(
            s,
            actor,
            "workspace:query",
            datasets,
            lambda _c: grants.context(g),
            resource_type="workspace",
            resource_id=str(grant_id),
            purpose=g.purpose,
            grant=g,
        ) as outcome:
            exc = d.refused or Invalid("the query could not be checked")
            outcome.update({"stage": "sqlguard", "sql_digest": d.digest, "refused": exc.detail})
            raise exc
    guarded, plan, read, names = d.guarded, d.plan, d.read, d.names
    used = {c: datasets[c] for c in read}

    def ctx(code: str) -> Any:
        return grants.context(
            g, columns=[grants.qualified(code, c) for c in read[code]], raw_grade=d.grade.get(code, 0)
        )

    with grants.authorized_each(
        s,
        actor,
        "workspace:query",
        used,
        ctx,
        resource_type="workspace",
        resource_id=str(grant_id),
        purpose=g.purpose,
        grant=g,
    ) as outcome:
        versions = {c: workspaces.current_version(s, ds) for c, ds in used.items()}
        q = Query(
            grant_id=grant_id,
            principal=actor.principal,
            org=actor.org or "",
            sql_text=sql,
            sql_digest=guarded.digest,
            tables=sorted(used),
            columns=sorted(grants.qualified(c, x) for c, xs in read.items() for x in xs),
            versions={c: v.number for c, v in versions.items()},
            status="running",
            output_grade=max(d.grade.values(), default=0),
            created_at=clock.now(),
        )
        if plan.sql is None:
            q.status, q.decision, q.reasons, q.finished_at = (
                "refused",
                "refused",
                list(plan.reasons),
                clock.now(),
            )
        s.add(q)
        s.flush()
        outcome.update(
            {
                "stage": "started" if plan.sql else "refused",
                "query": q.id,
                "sql_digest": q.sql_digest,
                "tables": q.tables,
                "columns": q.columns,
                "versions": q.versions,
            }
        )
        if plan.sql is None:
            outcome.update({"output_control": "refused", "reasons": q.reasons})
    ids = {t: c for t, c in d.identity.items() if c}
    # An identity column is loaded only where output control counts individuals by it; the user's SQL
    # cannot name it unless it was granted (the decision point checked the columns the SQL reads).
    cols = output_control.columns_to_load(guarded, plan, ids)
    return _Plan(
        grant=g,
        query=q,
        guarded=guarded,
        sql=plan.sql,
        used=used,
        versions=versions,
        names=names,
        columns=cols,
        identity=ids,
        tags=d.tags,
        ctx=ctx,
    )


def _output_grades(
    guarded: sqlguard.GuardedQuery, names: dict[str, str], datasets: dict[str, Dataset]
) -> dict[str, int]:
    """Per dataset: the highest grade of sources of output columns that carry values (not aggregates)."""
    v = vocabulary.default()
    out: dict[str, int] = {}
    for oc in guarded.output_columns:
        if not (oc.group_key or oc.row_level):
            continue
        for src in oc.sources:
            table, _, column = src.partition(".")
            code = names[table]
            tag = grants.fields_of(datasets[code]).get(column)
            if tag is not None:
                out[code] = max(out.get(code, 0), v.tag(tag).grade)
    return out


def run_query(
    uow: Uow,
    *,
    actor: Actor,
    grant_id: int,
    sql: str,
    keyring: Any,
    data_dir: Path,
    limits: Limits | None = None,
    runner: SandboxRunner | None = None,
) -> Query:
    """Run `sql` in the grant's workspace; returns the query with output control's decision and reasons."""
    runner = runner or default_runner()
    # Parsing and planning need only a read of the grant: done before the write transaction opens, so
    # SQLite's write lock is held just for the decision, its audit record and the query row.
    with _read(uow) as s:
        draft = _draft(s, grant_id, sql)
        stale = _stale_grants(s, runner, keep=grant_id)
    if stale:
        runner.forget_grants(stale)
    with uow() as s:
        p = _prepare(s, actor, grant_id, sql, draft)
    if p.sql is None:
        return p.query
    try:
        # Decrypted only when the worker does not already hold this grant's view of this version warm, and
        # then only the chunks that hold the columns the query reads.
        tables: dict[str, Source] = {
            t: Cached(
                CacheKey(p.grant.id or 0, c, p.versions[c].number, p.versions[c].content_digest),
                functools.partial(_decrypted, p.used[c], p.versions[c], keyring, data_dir),
            )
            for t, c in p.names.items()
            if c in p.used
        }
        result = runner.run(p.sql, tables, columns=p.columns, limits=limits)
    except DomainError as exc:
        _finish_failed(uow, actor, p, exc)
        raise
    with _read(uow) as s:
        seen = grants.get(s, grant_id).budget
    checked = _check(p, result, seen)  # output control on the budget as read; re-done if it moved meanwhile
    try:
        with uow() as s:
            return _finish(s, actor, p, result, checked)
    except Denied as exc:
        with uow() as s:  # the refusal itself was logged by the unit of work; the query row records it too
            q = s.get(Query, p.query.id)
            if q is not None:
                q.status, q.reasons, q.finished_at = "denied", [exc.detail], clock.now()
                s.add(q)
        raise


@dataclass
class _Checked:
    """Output control's decision for one result, against the grant budget it started from."""

    budget_before: dict[str, Any] | None
    decision: output_control.OutputDecision
    budget: GrantBudget
    budget_after: dict[str, Any]
    result_json: dict[str, Any] | None


def _check(p: _Plan, result: Any, budget_before: dict[str, Any] | None) -> _Checked:
    """Output control outside any transaction: pure work on the result and a copy of the budget."""
    budget = GrantBudget.from_dict(budget_before or grants.default_budget())
    decision = output_control.check_output(
        result,
        p.guarded,
        rules=output_rules(),
        identity_column_per_table=p.identity,
        field_tags=p.tags,
        grant_budget=budget,
    )
    released = decision.released and decision.table is not None
    table_json = _table_json(decision.table) if released and decision.table is not None else None
    return _Checked(budget_before, decision, budget, budget.to_dict(), table_json)


def _read(uow: Uow) -> AbstractContextManager[Session]:
    """A read unit of work (no write lock) when the caller's factory offers one, as the gateway's does."""
    try:
        return uow(read=True)
    except TypeError:  # a plain `lambda: unit_of_work(engine)`
        return uow()


def preloader(keyring: Any, data_dir: Path, runner: SandboxRunner | None = None) -> workspaces.Preload:
    """What an opened workspace calls, after the decision point allowed it, to warm the grant's tables in a
    worker in the background: the granted columns plus the identity column queries count individuals by."""

    def preload(grant_id: int, tables: list[tuple[str, Dataset, Any, list[str]]]) -> None:
        sources: dict[str, Cached] = {}
        columns: dict[str, set[str]] = {}
        for name, ds, v, cols in tables:
            ident = identity_column(ds)
            columns[name] = set(cols) | ({ident} if ident else set())
            ref = workspaces.VersionRef.of(ds, v)  # plain values: the thread never touches the session
            sources[name] = Cached(
                CacheKey(grant_id, ref.code, ref.number, ref.content_digest),
                functools.partial(_ref_columns, ref, keyring, data_dir),
            )
        if sources:
            (runner or default_runner()).preload_in_background(sources, columns)

    return preload


def _ref_columns(ref: workspaces.VersionRef, keyring: Any, data_dir: Path, columns: list[str] | None) -> TableSource:
    return ref.columns(columns or [], keyring=keyring, data_dir=data_dir)


def _decrypted(ds: Dataset, v: Any, keyring: Any, data_dir: Path, columns: list[str] | None) -> TableSource:
    if columns is None:
        return ParquetBytes(workspaces.parquet_bytes(ds, v, keyring=keyring, data_dir=data_dir))
    return workspaces.parquet_columns(ds, v, columns, keyring=keyring, data_dir=data_dir)


def _stale_grants(s: Session, runner: Any, *, keep: int) -> set[int]:
    """Grants some worker keeps warm that are no longer active (revoked or expired, also by another
    gateway process): their tables are dropped. Never served anyway: every query is decided first."""
    if not isinstance(runner, SandboxRunner):
        return set()
    held = runner.cached_grants() - {keep}
    if not held:
        return set()
    found = s.exec(select(Grant).where(col(Grant.id).in_(sorted(held)))).all()
    return (held - {g.id for g in found}) | {g.id for g in found if g.id and grants.status(g) != "active"}


def forget_grant(grant_id: int) -> None:
    """Drop a grant's warm tables from this process's runner (called when the grant is revoked)."""
    with _RUNNER_LOCK:
        runner = _RUNNER
    if runner is not None:
        runner.forget_grants({grant_id})


grants.REVOKE_HOOKS.append(forget_grant)


def _finish_failed(uow: Uow, actor: Actor, p: _Plan, exc: DomainError) -> None:
    with uow() as s:
        g = grants.get(s, p.grant.id or 0)
        kw = {"resource_type": "workspace", "resource_id": str(g.id), "purpose": g.purpose}
        version = grants.recheck(s, actor, "workspace:query", p.used, _fresh_ctx(p, g), grant=g, **kw)
        q = s.get(Query, p.query.id)
        assert q is not None
        q.status, q.reasons, q.finished_at = "failed", [exc.detail], clock.now()
        s.add(q)
        grants.record_effect(
            s,
            actor,
            RESULT_EFFECT,
            datasets=p.used,
            policy_version=version,
            **kw,
            outcome={"stage": "failed", "query": q.id, "sql_digest": q.sql_digest, "error": exc.type_slug},
        )


def _fresh_ctx(p: _Plan, g: Grant) -> Callable[[str], Any]:
    def ctx(code: str) -> Any:
        old = p.ctx(code)
        return grants.context(g, columns=old.columns, raw_grade=old.raw_grade)

    return ctx


def _finish(s: Session, actor: Actor, p: _Plan, result: Any, checked: _Checked) -> Query:
    """Transaction 3 (short): re-authorise, then store output control's decision and the new budget."""
    g = grants.get(s, p.grant.id or 0, for_update=True)  # serialises budget updates of one grant
    kw = {"resource_type": "workspace", "resource_id": str(g.id), "purpose": g.purpose}
    # Revoked or expired while the query ran: refused here, and the refusal is logged.
    version = grants.recheck(s, actor, "workspace:query", p.used, _fresh_ctx(p, g), grant=g, **kw)
    if g.budget != checked.budget_before:  # another query of this grant finished meanwhile: decide again
        checked = _check(p, result, g.budget)
    decision, budget = checked.decision, checked.budget
    g.budget = checked.budget_after
    s.add(g)
    q = s.get(Query, p.query.id)
    assert q is not None
    q.rows_scanned, q.rows_returned, q.elapsed_ms = (
        result.rows_scanned,
        result.rows_returned,
        result.elapsed_ms,
    )
    q.decision = "released" if decision.released else "refused"
    q.status, q.reasons, q.finished_at = q.decision, list(decision.reasons), clock.now()
    q.result = checked.result_json
    s.add(q)
    outcome = {
        "stage": "finished",
        "query": q.id,
        "sql_digest": q.sql_digest,
        "tables": q.tables,
        "columns": q.columns,
        "rows_scanned": q.rows_scanned,
        "rows_returned": q.rows_returned,
        "output_control": q.decision,
        "reasons": q.reasons,
        "released_rows": len(q.result["rows"]) if q.result else 0,
        "suppressed_cells": decision.suppressed_cells,
        "flags": decision.flags,
        "queries_left": budget.queries_left,
        "cells_left": budget.cells_left,
    }
    grants.record_effect(s, actor, RESULT_EFFECT, datasets=p.used, policy_version=version, outcome=outcome, **kw)
    return q


def _table_json(table: pa.Table) -> dict[str, Any]:
    rows = [list(r.values()) for r in table.to_pylist()]
    return {"columns": list(table.column_names), "rows": json.loads(json.dumps(rows, default=str))}


def get_query(session: Session, *, actor: Actor, query_id: int) -> Query:
    """A query with its decision and released result, for the grant holder."""
    q = session.get(Query, query_id)
    if q is None:
        raise NotFound(f"no query with id {query_id}")
    _authorize_read(session, actor, q.grant_id, [q])
    return q


def list_queries(session: Session, *, actor: Actor, grant_id: int) -> list[Query]:
    """The grant's queries, newest first."""
    qs = list(session.exec(select(Query).where(Query.grant_id == grant_id).order_by(col(Query.id).desc())).all())
    _authorize_read(session, actor, grant_id, qs)
    return qs


def _authorize_read(session: Session, actor: Actor, grant_id: int, qs: list[Query]) -> None:
    g = grants.get(session, grant_id)
    datasets = grants.datasets_of(session, sorted({c for q in qs for c in q.tables} or set(g.datasets)))
    grade = max((q.output_grade for q in qs), default=0)
    with grants.authorized_each(
        session,
        actor,
        "workspace:query",
        datasets,
        lambda _c: grants.context(g, raw_grade=grade),
        resource_type="workspace",
        resource_id=str(grant_id),
        purpose=g.purpose,
        grant=g,
    ) as outcome:
        outcome.update({"stage": "read_results", "queries": [q.id for q in qs][:50]})


def to_out(q: Query) -> dict[str, Any]:
    return {
        "id": q.id,
        "grant_id": q.grant_id,
        "status": q.status,
        "decision": q.decision,
        "reasons": q.reasons,
        "sql_digest": q.sql_digest,
        "tables": q.tables,
        "columns": q.columns,
        "versions": q.versions,
        "rows_scanned": q.rows_scanned,
        "rows_returned": q.rows_returned,
        "result": q.result,
        "elapsed_ms": q.elapsed_ms,
        "created_at": q.created_at,
        "finished_at": q.finished_at,
    }
