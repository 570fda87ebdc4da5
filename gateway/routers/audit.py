"""The auditor's API: search, aggregates, export, checkpoints, proofs, alerts, verification."""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, BackgroundTasks, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, PlainTextResponse

from audit.search import AuditQuery
from common.errors import BadRequest
from gateway.deps import Id, PrincipalCtxDep, StateDep
from oversight import service

router = APIRouter()


def _query(
    principal: str | None,
    org: str | None,
    action: str | None,
    dataset: str | None,
    decision: str | None,
    scenario: str | None,
    experiment: str | None,
    since: datetime | None,
    until: datetime | None,
    before_seq: int | None = None,
    limit: int = 100,
) -> AuditQuery:
    return AuditQuery(
        principal=principal,
        org=org,
        action=action,
        dataset=dataset,
        allowed=None if decision is None else decision == "allowed",
        scenario=scenario,
        experiment=experiment,
        since=since,
        until=until,
        before_seq=before_seq,
        limit=limit,
    )


Decision = Annotated[Literal["allowed", "denied"] | None, Query(description="allowed or denied")]


def _record(r: Any) -> dict[str, Any]:
    import json

    return {
        "seq": r.seq,
        "time": r.time,
        "principal": r.principal,
        "org": r.org,
        "role": r.role,
        "action": r.action,
        "resource_type": r.resource_type,
        "resource_id": r.resource_id,
        "dataset": r.dataset,
        "dataset_version": r.dataset_version,
        "allowed": r.allowed,
        "reasons": json.loads(r.reasons),
        "policy_version": r.policy_version,
        "scenario": r.scenario,
        "experiment": r.experiment,
        "purpose": r.purpose,
        "request_id": r.request_id,
        "client_addr": r.client_addr,
        "outcome": json.loads(r.outcome),
        "leaf_hash": r.leaf_hash,
        "chain_hash": r.chain_hash,
    }


@router.get("/events", summary="Search the access log (newest first, keyset pages)")
def events(
    c: PrincipalCtxDep,
    request: Request,
    principal: str | None = None,
    org: str | None = None,
    action: str | None = None,
    dataset: str | None = None,
    decision: Decision = None,
    scenario: str | None = None,
    experiment: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_seq: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    q = _query(principal, org, action, dataset, decision, scenario, experiment, since, until, before_seq, limit)
    with c.uow(read=True) as s:
        page = service.search_events(s, actor=c.actor, query=q)
        data = [_record(r) for r in page.items]
    nxt = None
    if len(data) == limit and data:
        nxt = str(request.url.include_query_params(before_seq=data[-1]["seq"]))
    return {"data": data, "links": {"self": str(request.url), "next": nxt}, "meta": {"limit": limit}}


@router.get("/events/{seq}", summary="One record with its inclusion proof against the latest checkpoint")
def event(seq: Id, c: PrincipalCtxDep) -> dict[str, Any]:
    with c.uow(read=True) as s:
        rec, proof = service.event(s, actor=c.actor, seq=seq)
        return {"record": _record(rec), "inclusion_proof": proof}


@router.get("/aggregates", summary="Accesses per dataset, organisation, day and action")
def aggregates(
    c: PrincipalCtxDep,
    principal: str | None = None,
    org: str | None = None,
    action: str | None = None,
    dataset: str | None = None,
    decision: Decision = None,
    scenario: str | None = None,
    experiment: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    q = _query(principal, org, action, dataset, decision, scenario, experiment, since, until)
    with c.uow(read=True) as s:
        return service.aggregates(s, actor=c.actor, query=q)


@router.get(
    "/export",
    summary="Export the log as a zip (records JSONL, checkpoints, proof material)",
    response_class=FileResponse,
)
def export(
    c: PrincipalCtxDep,
    background: BackgroundTasks,
    first_seq: Annotated[int, Query(ge=1)] = 1,
    last_seq: Annotated[int | None, Query(ge=1)] = None,
) -> FileResponse:
    tmp = Path(tempfile.mkdtemp(dir=_scratch(c.state.data_dir)))
    out = tmp / f"audit-export-{uuid.uuid4().hex[:8]}.zip"
    background.add_task(_cleanup, tmp)
    try:
        with c.uow(read=True) as s:
            service.export_log(s, actor=c.actor, out=out, first_seq=first_seq, last_seq=last_seq)
    except Exception:
        _cleanup(tmp)
        raise
    return FileResponse(out, media_type="application/zip", filename=out.name)


@router.get("/checkpoints", summary="Signed checkpoints (tree heads), newest first")
def checkpoints(c: PrincipalCtxDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
    with c.uow(read=True) as s:
        return [cp.model_dump(mode="json") for cp in service.list_checkpoints(s, actor=c.actor, limit=limit)]


@router.post("/checkpoints", status_code=201, summary="Sign a checkpoint now")
def sign_checkpoint(c: PrincipalCtxDep) -> dict[str, Any]:
    with c.uow() as s:
        return service.sign_now(s, actor=c.actor, keyring=c.state.keyring).model_dump(mode="json")


@router.get("/proofs/consistency", summary="Consistency proof between two tree sizes")
def consistency(
    c: PrincipalCtxDep, old_size: Annotated[int, Query(ge=0)], new_size: Annotated[int, Query(ge=0)]
) -> dict[str, Any]:
    with c.uow(read=True) as s:
        return service.consistency(s, actor=c.actor, old_size=old_size, new_size=new_size)


@router.get("/proofs/{seq}", summary="Inclusion proof of one record against the latest checkpoint")
def inclusion(seq: Id, c: PrincipalCtxDep) -> dict[str, Any]:
    with c.uow(read=True) as s:
        _, proof = service.event(s, actor=c.actor, seq=seq)
    if proof is None:
        raise BadRequest(f"record {seq} is not under a signed checkpoint yet; sign one (POST /audit/checkpoints)")
    return proof


@router.get("/alerts", summary="Risk alerts, newest first")
def alerts(
    c: PrincipalCtxDep,
    since: datetime | None = None,
    rule: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    with c.uow(read=True) as s:
        return [
            a.model_dump(mode="json")
            for a in service.list_alerts(s, actor=c.actor, since=since, rule=rule, limit=limit)
        ]


@router.get(
    "/public-key",
    response_class=PlainTextResponse,
    summary="The gateway's SM2 public keys (PEM), for offline verification",
)
def public_keys(state: StateDep) -> str:
    return "".join(k.to_pem().decode() for k in state.keyring.public_keys.values())


@router.post("/verify", summary="Verify an uploaded export (zip) against the gateway's public keys")
async def verify(request: Request, c: PrincipalCtxDep) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(dir=_scratch(c.state.data_dir)))
    try:
        path = tmp / "export.zip"
        size = 0
        with open(path, "wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                out.write(chunk)
        if size == 0:
            raise BadRequest("send the export zip as the request body")
        result = await run_in_threadpool(_verify, c, path)
        return {k: v for k, v in result.__dict__.items() if not k.startswith("_")}
    finally:
        _cleanup(tmp)


def _verify(c: Any, path: Path) -> Any:
    with c.uow() as s:
        return service.verify_upload(s, actor=c.actor, path=path, public_keys=c.state.keyring.public_keys)


def _scratch(data_dir: Path) -> Path:
    d = data_dir / "tmp"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _cleanup(path: Path) -> None:
    import shutil

    with contextlib.suppress(OSError):
        shutil.rmtree(path)
