"""Set up a pass and run its tasks through the real services (identity, catalog, sandbox, open data)."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from sqlmodel import Session

import identity
from catalog import demo_data, opendata, publish, samples
from catalog import service as catalog
from common import clock
from common.actor import Actor
from common.errors import Denied, DomainError, Invalid
from datarange.definition import Experiment, Task
from datarange.isolation import Pass, dataset_code
from gmcrypto.sm2 import PrivateKey
from policies import masking, resources
from policies.engine import Context
from policies.guard import authorized
from sandbox import grants, onboarding, queries, requests, sharing, workspaces

Uow = Callable[[], AbstractContextManager[Session]]
KIND = {"department": "department", "operator": "operator", "enterprise": "enterprise", "auditor": "audit_office"}
RESULT_KINDS = ("read_shared", "emergency_read", "query", "download")


def setup(uow: Uow, p: Pass, exp: Experiment, *, keyring: Any, data_dir: Path) -> None:
    """Create the pass's organisations and principals, then register and publish its datasets."""
    system = Actor.system(f"datarange:{p.run_id}")
    for part in exp.participants:
        code = p.org(part.org)
        name = part.name or part.org
        with uow() as s:
            if part.role == "enterprise":
                pem = PrivateKey.generate().public_key().to_pem().decode()
                _, principal, _ = onboarding.onboard_enterprise(
                    s, actor=system, code=code, name=name, public_key_pem=pem, principal_name=f"{name} analyst"
                )
            else:
                identity.create_organisation(s, actor=system, code=code, name=name, kind=KIND[part.role])
                pr, _ = identity.create_principal(s, actor=system, org_code=code, role=part.role, name=f"{name} staff")
                principal = pr.code
        p.actors[part.org] = Actor(principal=str(principal), role=part.role, org=code, name=name)
    for spec in exp.datasets:
        code = dataset_code(p.run_id, p.name, spec.name)
        body = demo_data.registration(spec.library)
        changes: dict[str, Any] = {"code": code, "title": f"{body.title} ({exp.name}/{spec.name})"}
        changes.update({k: v for k in ("open_type", "share_type") if (v := getattr(spec, k)) is not None})
        if spec.drop:
            changes["fields"] = [f for f in body.fields if f.name not in spec.drop]
        owner = p.actors[spec.owner]
        with uow() as s:
            catalog.register(s, actor=owner, data=body.model_copy(update=changes))
        p.codes[spec.name] = code
        p.specs[spec.name] = spec
        _publish(uow, owner, code, spec.library, spec.rows, spec.drop, keyring=keyring, data_dir=data_dir)


def _publish(
    uow: Uow, actor: Actor, code: str, library: str, rows: int, drop: list[str], *, keyring: Any, data_dir: Path
) -> Any:
    seed = int.from_bytes(os.urandom(4), "big")
    with tempfile.TemporaryDirectory() as tmp:
        frame = samples.generate(library, rows, seed=seed).frame.drop(columns=list(drop))
        path = Path(tmp) / f"{code}.csv"
        frame.to_csv(path, index=False)
        up = publish.Upload(path=path, fmt="csv")
        return publish.publish(uow, actor=actor, code=code, upload=up, data_dir=data_dir, keyring=keyring)


def emergency_read(
    session: Session, *, actor: Actor, code: str, columns: list[str], purpose: str, keyring: Any, data_dir: Path
) -> dict[str, Any]:
    """Read a shared dataset without a grant (masked for `share`): what a scenario overlay may allow, and the
    baseline never does. The decision point decides; this path adds no rule of its own."""
    ds = catalog.get(session, code)
    tags_all = grants.fields_of(ds)
    unknown = [c for c in columns if c not in tags_all]
    if unknown:
        raise Invalid(f"dataset {code!r} has no column {unknown[0]!r}")
    tags = {c: tags_all[c] for c in columns}
    ctx = Context(
        purpose=purpose,
        columns=frozenset(grants.qualified(code, c) for c in columns),
        raw_grade=workspaces.masked_grade(tags, "share"),
    )
    with authorized(
        session, actor, "dataset:read_shared", resources.dataset(ds), ctx,
        resource_type="share", resource_id=code, purpose=purpose, dataset=code,
    ) as act:  # fmt: skip
        v = workspaces.current_version(session, ds)
        act.dataset_version = v.number
        frame = workspaces.read_frame(
            workspaces.parquet_columns(ds, v, columns, keyring=keyring, data_dir=data_dir).assemble(),
            columns,
            limit=20,
        )
        rows = workspaces.jsonable_rows(masking.mask_frame(frame, tags, "share", os.urandom(16)))
        act.outcome.update({"rows": len(rows), "columns": len(columns), "emergency": True})
    return {"rows": len(rows)}


def run_task(uow: Uow, p: Pass, t: Task, *, keyring: Any, data_dir: Path, cursor_key: bytes) -> dict[str, Any]:
    """Run one task as its participant; returns {task, kind, as, role, outcome, status, detail, ms, ...}."""
    actor = Actor.public() if t.as_ == "public" else p.actors[t.as_]
    res: dict[str, Any] = {"task": t.id, "kind": t.kind, "as": t.as_, "role": actor.role, "dataset": t.dataset}
    start, t0 = clock.now(), time.perf_counter()
    try:
        res.update(_do(uow, p, t, actor, keyring=keyring, data_dir=data_dir, cursor_key=cursor_key))
        res.setdefault("outcome", "allowed")
    except Denied as exc:
        res.update(outcome="denied", status="denied", detail=exc.detail)
    except DomainError as exc:
        res.update(outcome="error", status=exc.type_slug, detail=exc.detail)
    res["started_at"] = start.isoformat()
    res["finished_at"] = clock.now().isoformat()
    res["ms"] = round((time.perf_counter() - t0) * 1000, 1)
    want = t.expected(p.name)
    if want is not None:
        res["expected"] = want
        res["as_expected"] = want in (res["outcome"], res.get("status"))
    return res


def _do(uow: Uow, p: Pass, t: Task, actor: Actor, *, keyring: Any, data_dir: Path, cursor_key: bytes) -> dict:
    if t.kind == "request":
        cols = {p.codes[d]: c for d, c in t.datasets.items()} or {p.codes[t.dataset or ""]: t.columns}
        text = f"{t.purpose} (data range {p.run_id})"
        with uow() as s:
            if actor.role == "department":
                (code, columns), *_ = cols.items()
                req = sharing.request_share(
                    s, actor=actor, code=code, columns=columns, purpose=t.purpose or "", purpose_text=text,
                    duration_days=7, keyring=keyring,
                )  # fmt: skip
            else:
                req = requests.submit(
                    s, actor=actor, kind="sandbox", columns=cols, purpose=t.purpose or "", purpose_text=text,
                    duration_days=7, intended_outputs=["aggregates"],
                )  # fmt: skip
            p.requests[t.id] = int(req.id or 0)
            if req.grant_id:
                p.grants[t.id] = req.grant_id
            return {"status": req.state, "request": req.id}
    if t.kind in ("approve", "deny"):
        rid = p.requests.get(t.request or "")
        if rid is None:
            return {"outcome": "skipped", "status": "no_request"}
        with uow() as s:
            req = requests.decide_request(
                s, actor=actor, request_id=rid, approve=t.kind == "approve",
                reason=t.reason or ("ok" if t.kind == "approve" else "refused in the range"), keyring=keyring,
            )  # fmt: skip
            if req.grant_id:
                p.grants[t.request or ""] = req.grant_id
            return {"status": req.state}
    if t.kind in ("read_shared", "query"):
        gid = p.grants.get(t.request or "")
        if gid is None:
            return {"outcome": "skipped", "status": "no_grant"}
        if t.kind == "read_shared":
            with uow() as s:
                page = sharing.read_shared(s, actor=actor, grant_id=gid, keyring=keyring, data_dir=data_dir, limit=20)
            return {"status": "read", "rows": len(page["rows"]), "result": True}
        q = queries.run_query(uow, actor=actor, grant_id=gid, sql=t.sql or "", keyring=keyring, data_dir=data_dir)
        return {
            "status": q.decision or q.status,
            "rows": q.rows_returned,
            "reasons": list(q.reasons or []),
            "result": q.decision == "released",
            "output_control": {"decision": q.decision, "status": q.status, "reasons": list(q.reasons or [])},
        }
    code = p.codes[t.dataset or ""]
    if t.kind == "emergency_read":
        with uow() as s:
            out = emergency_read(
                s, actor=actor, code=code, columns=t.columns, purpose=t.purpose or "", keyring=keyring,
                data_dir=data_dir,
            )  # fmt: skip
        return {"status": "read", "rows": out["rows"], "result": True}
    if t.kind == "download":
        with uow() as s:
            page = opendata.rows(
                s, actor=actor, code=code, params=[("_size", "20")], data_dir=data_dir, cursor_key=cursor_key,
                max_size=100,
            )  # fmt: skip
        return {"status": "read", "rows": len(page.data), "result": True}
    if t.kind == "publish":
        spec = p.specs[t.dataset or ""]
        v = _publish(uow, actor, code, spec.library, t.rows or 100, spec.drop, keyring=keyring, data_dir=data_dir)
        return {"status": "live", "version": v.number, "quality_score": v.quality_score}
    with uow() as s:  # quality
        ds = catalog.get(s, code)
        q = catalog.quality(s, actor=actor, code=code, number=ds.current_version or 1)
    return {"status": "read", "quality_score": (q.get("quality") or {}).get("score")}
