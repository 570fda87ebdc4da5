"""Sharing between departments (政务数据共享), by the dataset's share type.

unconditional → a grant at once (the policy already lets any department read it, masked for `share`);
conditional → an access request through the owning department's approval; closed → refused by the policy.
Shared data is read through the API, masked for the `share` audience, page by page.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlmodel import Session

from catalog import service as catalog
from common import clock
from common.actor import Actor
from common.errors import Conflict, Denied, Invalid
from policies import masking, resources
from policies.guard import authorized
from sandbox import grants, requests, workspaces
from sandbox.models import AccessRequest, Grant

MAX_PAGE = 1000


def request_share(
    session: Session,
    *,
    actor: Actor,
    code: str,
    columns: Sequence[str],
    purpose: str,
    purpose_text: str,
    duration_days: int,
    keyring: Any,
) -> AccessRequest:
    """A department asks for another's dataset; returns the request (state `active` with a grant when
    the dataset is shared unconditionally, `submitted` when it needs the owner's approval)."""
    ds = catalog.get(session, code)
    if ds.share_type != "unconditional":
        return requests.submit(
            session,
            actor=actor,
            kind="share",
            columns={code: list(columns)},
            purpose=purpose,
            purpose_text=purpose_text,
            duration_days=duration_days,
        )
    tags = grants.fields_of(ds)
    chosen = {c: tags[c] for c in columns if c in tags}
    ctx = grants.context(
        None,
        purpose=purpose,
        columns=[grants.qualified(code, c) for c in columns],
        raw_grade=workspaces.masked_grade(chosen, "share"),
    )
    # No approval to wait for: the decision point allows unconditional sharing (share.unconditional); the
    # grant records who reads what, for how long, and can still be revoked.
    with authorized(
        session,
        actor,
        "dataset:read_shared",
        resources.dataset(ds),
        ctx,
        resource_type="share",
        resource_id=code,
        purpose=purpose,
        dataset=code,
    ) as act:
        if actor.role != "department" or actor.org == ds.owner_org:
            raise Invalid("share requests are made by a department for another department's dataset")
        cols = requests._validate({code: list(columns)}, {code: ds}, purpose, purpose_text, duration_days, [])
        now = clock.now()
        req = AccessRequest(
            kind="share",
            requester=actor.principal,
            requester_org=actor.org or "",
            requester_role=actor.role,
            datasets=[code],
            columns=cols,
            owners=[ds.owner_org],
            purpose=purpose,
            purpose_text=purpose_text.strip(),
            duration_days=duration_days,
            intended_outputs=[],
            state="active",
            decisions=[
                {
                    "by": "policy",
                    "org": None,
                    "role": "policy",
                    "decision": "approve",
                    "reason": "unconditional share type",
                    "at": now.isoformat(),
                }
            ],
            created_at=now,
            updated_at=now,
        )
        session.add(req)
        session.flush()
        g = grants.create(
            session,
            req=req,
            kind="share",
            org=actor.org or "",
            requester=actor.principal,
            datasets=[code],
            columns=cols,
            purpose=purpose,
            duration_days=duration_days,
            keyring=keyring,
        )
        req.grant_id = g.id
        session.add(req)
        act.outcome.update({"request": req.id, "grant": g.id, "immediate": True, "columns": len(cols)})
    return req


def read_shared(
    session: Session,
    *,
    actor: Actor,
    grant_id: int,
    keyring: Any,
    data_dir: Path,
    limit: int = 100,
    offset: int = 0,
) -> dict[str, Any]:
    """A page of the shared dataset's granted columns, masked for the `share` audience."""
    if not 1 <= limit <= MAX_PAGE or offset < 0:
        raise Invalid(f"limit must be 1..{MAX_PAGE} and offset at least 0")
    g = grants.get(session, grant_id)
    if g.kind != "share":
        raise Invalid(f"grant {grant_id} is a sandbox grant; query it in its workspace")
    code = g.datasets[0]
    ds = catalog.get(session, code)
    cols = [c for c in grants.fields_of(ds) if grants.qualified(code, c) in g.columns]
    tags = {c: grants.fields_of(ds)[c] for c in cols}
    ctx = grants.context(
        g, columns=[grants.qualified(code, c) for c in cols], raw_grade=workspaces.masked_grade(tags, "share")
    )
    with authorized(
        session,
        actor,
        "dataset:read_shared",
        resources.dataset(ds),
        ctx,
        resource_type="share",
        resource_id=str(grant_id),
        purpose=g.purpose,
        dataset=code,
    ) as act:
        # The unconditional rule needs no grant, so the grant's own state is checked here as well.
        if g.org != actor.org:
            raise Denied(f"grant {grant_id} belongs to another organisation")
        if grants.status(g) != "active":
            raise Conflict(f"grant {grant_id} is {grants.status(g)}")
        v = workspaces.current_version(session, ds)
        act.dataset_version = v.number
        frame = workspaces.read_frame(
            workspaces.parquet_columns(ds, v, cols, keyring=keyring, data_dir=data_dir).assemble(),
            cols,
            limit=limit,
            offset=offset,
        )
        masked = masking.mask_frame(frame, tags, "share", grants.pseudonym_key(g, keyring))
        rows = workspaces.jsonable_rows(masked)
        act.outcome.update({"grant": grant_id, "rows": len(rows), "offset": offset, "columns": len(cols)})
    return {
        "grant": grant_id,
        "dataset": code,
        "version": v.number,
        "columns": cols,
        "offset": offset,
        "rows": rows,
        "total": v.rows,
    }


def grant_of(session: Session, req: AccessRequest) -> Grant | None:
    return session.get(Grant, req.grant_id) if req.grant_id else None
