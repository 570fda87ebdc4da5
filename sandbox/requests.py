"""Access requests: submit, decide (each owning department, then the operator), list.

    submitted --(every owning department approves)--> dept_approved --(operator approves)--> active
    any decider may deny with a reason --> denied;      a grant revoked later --> revoked
Share requests (department to department) become active once the owning departments approve.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from sqlmodel import Session, col, select

from common import clock
from common.actor import Actor
from common.errors import Conflict, Invalid, NotFound
from policies import resources
from policies.guard import decide
from sandbox import grants
from sandbox.models import AccessRequest, Grant

PURPOSE_RE = re.compile(r"^[a-z][a-z0-9_.-]{1,63}$")
MAX_DATASETS = 10
MAX_DAYS = 365
MAX_OUTPUTS = 20


def get(session: Session, request_id: int, *, for_update: bool = False) -> AccessRequest:
    stmt = select(AccessRequest).where(AccessRequest.id == request_id)
    if for_update:
        stmt = stmt.with_for_update(key_share=True)  # FOR NO KEY UPDATE: FK checks of child rows go on
    req = session.exec(stmt).first()
    if req is None:
        raise NotFound(f"no access request with id {request_id}")
    return req


def _validate(
    ds_columns: Mapping[str, Sequence[str]],
    datasets: dict[str, Any],
    purpose: str,
    purpose_text: str,
    duration_days: int,
    intended_outputs: Sequence[str],
) -> list[str]:
    """Checks the request's shape; returns the requested columns qualified as `code.column`."""
    if not PURPOSE_RE.match(purpose or ""):
        raise Invalid(
            "purpose: a code of 2-64 lower-case letters, digits, '_', '.' or '-' "
            "(e.g. credit_risk_model); explain it in purpose_text"
        )
    if not (purpose_text or "").strip() or len(purpose_text) > 2000:
        raise Invalid("purpose_text: say in 1..2000 characters what the data is for")
    if not isinstance(duration_days, int) or not 1 <= duration_days <= MAX_DAYS:
        raise Invalid(f"duration_days must be 1..{MAX_DAYS}")
    if len(intended_outputs) > MAX_OUTPUTS or any(not o.strip() or len(o) > 200 for o in intended_outputs):
        raise Invalid(f"intended_outputs: at most {MAX_OUTPUTS} non-empty descriptions of up to 200 characters")
    out: list[str] = []
    for code, cols in ds_columns.items():
        known = grants.fields_of(datasets[code])
        if not cols:
            raise Invalid(f"dataset {code!r}: name the columns you need (one of {', '.join(known)})")
        unknown = [c for c in cols if c not in known]
        if unknown:
            raise Invalid(f"dataset {code!r} has no column {unknown[0]!r}; its columns: {', '.join(known)}")
        out.extend(grants.qualified(code, c) for c in dict.fromkeys(cols))
    return out


def load_datasets(session: Session, ds_columns: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    if not ds_columns or len(ds_columns) > MAX_DATASETS:
        raise Invalid(f"name 1..{MAX_DATASETS} datasets, each with the columns you need")
    return grants.datasets_of(session, ds_columns)


def submit(
    session: Session,
    *,
    actor: Actor,
    kind: str,
    columns: Mapping[str, Sequence[str]],
    purpose: str,
    purpose_text: str,
    duration_days: int,
    intended_outputs: Sequence[str] = (),
) -> AccessRequest:
    """Ask for sandbox access (enterprise) or conditional sharing (department) to some columns of datasets."""
    if kind not in ("sandbox", "share"):
        raise Invalid("kind must be sandbox or share")
    datasets = load_datasets(session, columns)
    qual = [grants.qualified(c, x) for c, cols in columns.items() for x in cols]
    by_ds = grants.columns_by_dataset(qual)
    with grants.authorized_each(
        session,
        actor,
        "request:create",
        datasets,
        lambda code: grants.context(
            None, purpose=purpose, columns=[grants.qualified(code, c) for c in by_ds.get(code, [])]
        ),
        resource_type="request",
        resource_id="new",
        purpose=purpose,
    ) as outcome:
        cols = _validate(columns, datasets, purpose, purpose_text, duration_days, list(intended_outputs))
        if kind == "share" and actor.role != "department":
            raise Invalid("share requests are made by departments; enterprises ask for sandbox access")
        now = clock.now()
        req = AccessRequest(
            kind=kind,
            requester=actor.principal,
            requester_org=actor.org or "",
            requester_role=actor.role,
            datasets=list(datasets),
            columns=cols,
            owners=sorted({ds.owner_org for ds in datasets.values()}),
            purpose=purpose,
            purpose_text=purpose_text.strip(),
            duration_days=duration_days,
            intended_outputs=[o.strip() for o in intended_outputs],
            state="submitted",
            decisions=[],
            created_at=now,
            updated_at=now,
        )
        session.add(req)
        session.flush()
        outcome.update(
            {
                "request": req.id,
                "kind": kind,
                "columns": len(cols),
                "duration_days": duration_days,
                "state": "submitted",
            }
        )
    return req


def _approved_owners(req: AccessRequest) -> set[str]:
    return {d["org"] for d in req.decisions if d["decision"] == "approve" and d["role"] == "department"}


def _stage_datasets(session: Session, req: AccessRequest, actor: Actor) -> dict[str, Any]:
    """The datasets `actor` decides on at this stage (all of them when the actor has no share in the decision,
    so the decision point, not this code, is what refuses a stranger)."""
    datasets = grants.datasets_of(session, req.datasets)
    if req.state == "submitted" and actor.role == "department" and actor.org in req.owners:
        return {c: ds for c, ds in datasets.items() if ds.owner_org == actor.org}
    return datasets


def decide_request(
    session: Session, *, actor: Actor, request_id: int, approve: bool, reason: str = "", keyring: Any
) -> AccessRequest:
    """Approve or deny a request as an owning department or the operator (no self-approval, reasons to deny)."""
    req = get(session, request_id, for_update=True)
    action = "request:approve" if approve else "request:deny"
    datasets = _stage_datasets(session, req, actor)
    by_ds = grants.columns_by_dataset(req.columns)
    with grants.authorized_each(
        session,
        actor,
        action,
        datasets,
        lambda code: grants.context(
            None,
            purpose=req.purpose,
            requester=req.requester,
            requester_org=req.requester_org,
            requester_role=req.requester_role,
            columns=[grants.qualified(code, c) for c in by_ds.get(code, [])],
        ),
        resource_type="request",
        resource_id=str(request_id),
        purpose=req.purpose,
    ) as outcome:
        reason = (reason or "").strip()
        if len(reason) > grants.MAX_REASON or (not approve and not reason):
            raise Invalid(
                f"a denial needs a reason (1..{grants.MAX_REASON} characters)"
                if not approve
                else f"reason: at most {grants.MAX_REASON} characters"
            )
        if req.state not in ("submitted", "dept_approved"):
            raise Conflict(f"request {request_id} is {req.state}; only open requests can be decided")
        operator_turn = req.state == "dept_approved"
        if actor.role == "department":
            if operator_turn or actor.org in _approved_owners(req):
                raise Conflict(f"your department already approved request {request_id}")
        elif approve and not operator_turn:
            raise Conflict(
                f"request {request_id} waits for the owning departments "
                f"({', '.join(sorted(set(req.owners) - _approved_owners(req)))}) first"
            )
        now = clock.now()
        req.decisions = [
            *req.decisions,
            {
                "by": actor.principal,
                "org": actor.org,
                "role": actor.role,
                "decision": "approve" if approve else "deny",
                "reason": reason,
                "at": now.isoformat(),
            },
        ]
        if not approve:
            req.state = "denied"
        elif actor.role == "department" and _approved_owners(req) >= set(req.owners):
            req.state = "dept_approved" if req.requester_role == "enterprise" else "active"
        elif actor.role != "department":
            req.state = "active"
        if req.state == "active":
            g = grants.create(
                session,
                req=req,
                kind=req.kind,
                org=req.requester_org,
                requester=req.requester,
                datasets=req.datasets,
                columns=req.columns,
                purpose=req.purpose,
                duration_days=req.duration_days,
                keyring=keyring,
            )
            req.grant_id = g.id
            outcome["grant"] = g.id
            outcome["expires_at"] = g.expires_at.isoformat()
        req.updated_at = now
        session.add(req)
        outcome.update({"request": request_id, "decision": "approve" if approve else "deny", "state": req.state})
    return req


def list_requests(session: Session, *, actor: Actor, scope: str = "mine") -> list[AccessRequest]:
    """`mine`: requests of the caller's organisation. `to_decide`: open requests the caller may decide now."""
    if scope == "mine":
        stmt = select(AccessRequest).where(AccessRequest.requester_org == (actor.org or ""))
        return list(session.exec(stmt.order_by(col(AccessRequest.id).desc())).all())
    if scope != "to_decide":
        raise Invalid("scope must be mine or to_decide")
    open_reqs = session.exec(
        select(AccessRequest)
        .where(col(AccessRequest.state).in_(["submitted", "dept_approved"]))
        .order_by(col(AccessRequest.id))
    ).all()
    out = []
    for req in open_reqs:
        if actor.role == "department" and (
            req.state != "submitted" or actor.org not in req.owners or actor.org in _approved_owners(req)
        ):
            continue
        if actor.role == "operator" and req.state != "dept_approved":
            continue
        datasets = _stage_datasets(session, req, actor)
        # The decision point filters the listing (not audited: nothing is read or changed here).
        ok = all(
            decide(
                actor,
                "request:approve",
                resources.dataset(ds),
                grants.context(
                    None,
                    purpose=req.purpose,
                    requester=req.requester,
                    requester_org=req.requester_org,
                    requester_role=req.requester_role,
                ),
            ).allowed
            for ds in datasets.values()
        )
        if ok:
            out.append(req)
    return out


def to_out(session: Session, req: AccessRequest) -> dict[str, Any]:
    state = req.state
    grant = session.get(Grant, req.grant_id) if req.grant_id else None
    if grant is not None and state == "active":
        state = grants.status(grant)  # active | expired | revoked
    return {
        "id": req.id,
        "kind": req.kind,
        "requester": req.requester,
        "requester_org": req.requester_org,
        "datasets": req.datasets,
        "columns": req.columns,
        "owners": req.owners,
        "purpose": req.purpose,
        "purpose_text": req.purpose_text,
        "duration_days": req.duration_days,
        "intended_outputs": req.intended_outputs,
        "state": state,
        "decisions": req.decisions,
        "grant_id": req.grant_id,
        "created_at": req.created_at,
        "updated_at": req.updated_at,
    }
