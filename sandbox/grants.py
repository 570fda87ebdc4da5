"""Grants: creating them from approvals, checking them at every use, revoking them at once."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from typing import Any

from sqlmodel import Session, select

import audit
from catalog import service as catalog
from catalog.models import Dataset
from common import clock
from common.actor import Actor
from common.errors import Conflict, Denied, Invalid, NotFound
from policies import resources
from policies.engine import Context
from policies.engine import Grant as PolicyGrant
from policies.guard import Act, authorized, decide
from sandbox.budget import GrantBudget
from sandbox.models import AccessRequest, Grant

PSEUDONYM_KEY_BYTES = 16
MAX_REASON = 500
# Called with a grant's id when it is revoked (the query service drops the grant's warm tables). Only
# memory is at stake: a revoked grant is refused at the decision point whatever a worker still holds.
REVOKE_HOOKS: list[Callable[[int], None]] = []


def get(session: Session, grant_id: int, *, for_update: bool = False) -> Grant:
    """The grant with this id, or NotFound."""
    stmt = select(Grant).where(Grant.id == grant_id)
    if for_update:
        # FOR NO KEY UPDATE: the budget changes, the key never does. Plain FOR UPDATE also blocks the
        # foreign-key check of every new query row of this grant, so drafts queued behind finishes.
        stmt = stmt.with_for_update(key_share=True)
    g = session.exec(stmt).first()
    if g is None:
        raise NotFound(f"no grant with id {grant_id}")
    return g


def status(g: Grant) -> str:
    """active | expired | revoked, from the clock now (expiry is checked at every use)."""
    if g.revoked_at is not None:
        return "revoked"
    if clock.as_utc(g.expires_at) <= clock.now():
        return "expired"
    return "active"


def policy_grant(g: Grant) -> PolicyGrant:
    """The grant as the decision point sees it: the rules check org, datasets, columns, expiry, revocation."""
    return PolicyGrant(
        org=g.org,
        datasets=frozenset(g.datasets),
        purpose=g.purpose,
        expires_at=g.expires_at,
        columns=frozenset(g.columns),
        revoked=g.revoked_at is not None,
    )


def datasets_of(session: Session, codes: Iterable[str]) -> dict[str, Dataset]:
    """The catalog rows for `codes`, in the given order; NotFound for any unknown code."""
    return {code: catalog.get(session, code) for code in codes}


def fields_of(ds: Dataset) -> dict[str, str]:
    """column -> field tag, in schema order."""
    return {f["name"]: f["tag"] for f in ds.schema_def.get("fields", [])}


def qualified(code: str, column: str) -> str:
    return f"{code}.{column}"


def split(col: str) -> tuple[str, str]:
    code, _, column = col.rpartition(".")
    return code, column


def columns_by_dataset(columns: Iterable[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for col in columns:
        code, column = split(col)
        out.setdefault(code, []).append(column)
    return out


def table_names(datasets: dict[str, Dataset]) -> dict[str, str]:
    """SQL table name -> dataset code: the category when it is unique in the grant, else a name from the code."""
    cats = [ds.category for ds in datasets.values()]
    out = {}
    for code, ds in datasets.items():
        name = ds.category if cats.count(ds.category) == 1 else "d_" + re.sub(r"[^a-z0-9]", "_", code.lower())
        out[name] = code
    return out


def context(
    g: Grant | None,
    *,
    columns: Iterable[str] = (),
    raw_grade: int = 0,
    purpose: str = "",
    requester: str | None = None,
    requester_org: str | None = None,
    requester_role: str | None = None,
) -> Context:
    """A decision context; the grant's purpose is the request's purpose unless given."""
    return Context(
        grant=policy_grant(g) if g is not None else None,
        purpose=purpose or (g.purpose if g else ""),
        columns=frozenset(columns),
        raw_grade=raw_grade,
        requester=requester,
        requester_org=requester_org,
        requester_role=requester_role,
    )


def _refuse_if_any_denied(
    session: Session,
    actor: Actor,
    action: str,
    datasets: dict[str, Dataset],
    ctx_for: Any,
    kw: dict[str, Any],
    grant: Grant | None,
) -> str:
    """Decide on every dataset first; the first denial is raised (and logged) before any effect.

    Returns the policy version of the decisions, for records that follow them.
    """
    version = ""
    for code, ds in datasets.items():
        decision = decide(actor, action, resources.dataset(ds), ctx_for(code))
        version = decision.policy_version
        if decision.allowed:
            continue
        try:
            with authorized(session, actor, action, resources.dataset(ds), ctx_for(code), dataset=code, **kw):
                pass  # pragma: no cover - authorized raises Denied
        except Denied as exc:
            if grant is not None and status(grant) != "active":
                exc.detail = f"{exc.detail}; grant {grant.id} is {status(grant)}"
                exc.args = (exc.detail,)
            raise
    return version


@contextmanager
def authorized_each(
    session: Session,
    actor: Actor,
    action: str,
    datasets: dict[str, Dataset],
    ctx_for: Any,
    *,
    resource_type: str,
    resource_id: str,
    purpose: str | None = None,
    grant: Grant | None = None,
) -> Iterator[dict[str, Any]]:
    """Authorise `action` on every dataset (one decision and one audit record each); yields a shared outcome.

    `ctx_for(code)` gives each dataset's context. A denial on any dataset refuses the whole action; when
    `grant` is no longer active the denial says so.
    """
    outcome: dict[str, Any] = {}
    kw: dict[str, Any] = {"resource_type": resource_type, "resource_id": resource_id, "purpose": purpose}
    _refuse_if_any_denied(session, actor, action, datasets, ctx_for, kw, grant)
    with ExitStack() as stack:
        for code, ds in datasets.items():
            act: Act = stack.enter_context(
                authorized(session, actor, action, resources.dataset(ds), ctx_for(code), dataset=code, **kw)
            )
            act.outcome = outcome
        yield outcome


def recheck(
    session: Session,
    actor: Actor,
    action: str,
    datasets: dict[str, Dataset],
    ctx_for: Any,
    *,
    resource_type: str,
    resource_id: str,
    purpose: str | None = None,
    grant: Grant | None = None,
) -> str:
    """Ask again before an effect that follows an already recorded decision (e.g. a query's result).

    Allowed: nothing is recorded here (the decision is in the log once) and the policy version is
    returned for the effect's own record. Denied (revoked or expired meanwhile): the denial is recorded.
    """
    kw: dict[str, Any] = {"resource_type": resource_type, "resource_id": resource_id, "purpose": purpose}
    return _refuse_if_any_denied(session, actor, action, datasets, ctx_for, kw, grant)


def record_effect(
    session: Session,
    actor: Actor,
    effect: str,
    *,
    resource_type: str,
    resource_id: str,
    datasets: dict[str, Dataset],
    policy_version: str,
    purpose: str | None,
    outcome: dict[str, Any],
) -> None:
    """Record an effect (not a decision) that completes an earlier decided action, e.g. `query:result`."""
    codes = sorted(datasets)
    audit.record(
        session,
        actor=actor,
        action=effect,
        resource_type=resource_type,
        resource_id=resource_id,
        allowed=True,
        policy_version=policy_version,
        purpose=purpose,
        dataset=codes[0] if len(codes) == 1 else None,
        outcome={**outcome, "datasets": codes},
    )


def new_pseudonym_key(keyring: Any) -> bytes:
    """A fresh per-grant pseudonym key, sealed by the KEK (only the sealed blob is stored)."""
    return keyring.wrap_data_key(os.urandom(PSEUDONYM_KEY_BYTES))


def pseudonym_key(g: Grant, keyring: Any) -> bytes:
    return keyring.unwrap_data_key(g.pseudonym_key)


def default_budget() -> dict[str, Any]:
    from policies import vocabulary

    oc = vocabulary.default().output_control
    return GrantBudget(max_queries=oc.query_budget_per_day).to_dict()


def create(
    session: Session,
    *,
    req: AccessRequest | None,
    kind: str,
    org: str,
    requester: str,
    datasets: list[str],
    columns: list[str],
    purpose: str,
    duration_days: int,
    keyring: Any,
) -> Grant:
    """Insert a grant (called inside the authorised approval that makes it)."""
    now = clock.now()
    g = Grant(
        request_id=req.id if req else None,
        kind=kind,
        org=org,
        requester=requester,
        datasets=datasets,
        columns=columns,
        purpose=purpose,
        starts_at=now,
        expires_at=now + timedelta(days=duration_days),
        pseudonym_key=new_pseudonym_key(keyring),
        budget=default_budget(),
        created_at=now,
    )
    session.add(g)
    session.flush()
    return g


def revoke(session: Session, *, actor: Actor, grant_id: int, reason: str) -> Grant:
    """Revoke a grant at once: every later use (also a query still running) is refused."""
    reason = (reason or "").strip()
    if not reason or len(reason) > MAX_REASON:
        raise Invalid(f"give a reason for the revocation (1..{MAX_REASON} characters)")
    g = get(session, grant_id, for_update=True)
    ds = datasets_of(session, g.datasets)
    with authorized_each(
        session,
        actor,
        "grant:revoke",
        ds,
        lambda _c: context(g, requester=g.requester, requester_org=g.org),
        resource_type="grant",
        resource_id=str(grant_id),
        purpose=g.purpose,
    ) as outcome:
        if g.revoked_at is not None:
            raise Conflict(f"grant {grant_id} is already revoked")
        now = clock.now()
        g.revoked_at, g.revoked_by, g.revoke_reason = now, actor.principal, reason
        session.add(g)
        if g.request_id is not None:
            req = session.get(AccessRequest, g.request_id)
            if req is not None:
                req.state = "revoked"
                req.decisions = [
                    *req.decisions,
                    {
                        "by": actor.principal,
                        "org": actor.org,
                        "role": actor.role,
                        "decision": "revoke",
                        "reason": reason,
                        "at": now.isoformat(),
                    },
                ]
                req.updated_at = now
                session.add(req)
        outcome.update({"grant": grant_id, "org": g.org, "revoked": True})
    for hook in REVOKE_HOOKS:
        hook(grant_id)
    return g


def to_out(g: Grant) -> dict[str, Any]:
    budget = GrantBudget.from_dict(g.budget) if g.budget else None
    return {
        "id": g.id,
        "kind": g.kind,
        "org": g.org,
        "requester": g.requester,
        "datasets": g.datasets,
        "columns": g.columns,
        "purpose": g.purpose,
        "starts_at": g.starts_at,
        "expires_at": g.expires_at,
        "status": status(g),
        "revoked_at": g.revoked_at,
        "revoke_reason": g.revoke_reason,
        "budget": None if budget is None else {"queries_left": budget.queries_left, "cells_left": budget.cells_left},
    }
