"""Sandbox and sharing over HTTP: onboarding, requests and decisions, grants, workspaces, queries, exports."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, status
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from gateway import slots
from gateway.deps import Id, PrincipalCtxDep
from sandbox import exports, grants, onboarding, queries, requests, sharing, workspaces
from sandbox.runner import ADMISSION_WAIT_S, SandboxBusy

router = APIRouter()

Columns = dict[Annotated[str, Field(max_length=64)], list[Annotated[str, Field(max_length=64)]]]


class EnterpriseIn(BaseModel):
    code: str = Field(min_length=2, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    sm2_public_key_pem: str = Field(min_length=1, max_length=4096)
    status: Literal["active", "suspended"] = "active"
    principal_name: str | None = Field(
        default=None,
        max_length=200,
        description="Also create the enterprise's first principal (token shown once)",
    )


class RequestIn(BaseModel):
    columns: Columns = Field(description="dataset code -> the columns you need")
    purpose: str = Field(max_length=64, description="purpose code, e.g. credit_risk_model")
    purpose_text: str = Field(max_length=2000)
    duration_days: int = Field(ge=1, le=365)
    intended_outputs: list[Annotated[str, Field(max_length=200)]] = Field(default_factory=list, max_length=20)


class ShareIn(BaseModel):
    dataset: str = Field(max_length=64)
    columns: list[Annotated[str, Field(max_length=64)]] = Field(min_length=1, max_length=200)
    purpose: str = Field(max_length=64)
    purpose_text: str = Field(max_length=2000)
    duration_days: int = Field(ge=1, le=365)


class DecisionIn(BaseModel):
    decision: Literal["approve", "deny"]
    reason: str = Field(default="", max_length=500)


class RevokeIn(BaseModel):
    reason: str = Field(min_length=1, max_length=500)


class QueryIn(BaseModel):
    sql: str = Field(min_length=1, max_length=20_000)


class ExportIn(BaseModel):
    format: Literal["csv", "parquet"] = "csv"


class ReviewIn(BaseModel):
    decision: Literal["release", "refuse"]
    reason: str = Field(default="", max_length=500)


class RequestOut(BaseModel):
    id: int
    kind: str
    requester: str
    requester_org: str
    datasets: list[str]
    columns: list[str]
    owners: list[str]
    purpose: str
    purpose_text: str
    duration_days: int
    intended_outputs: list[str]
    state: str
    decisions: list[dict[str, Any]]
    grant_id: Id | None
    created_at: datetime
    updated_at: datetime


@router.get("/enterprises", summary="The onboarded enterprises, their status and key ids (operator)")
def list_enterprises(c: PrincipalCtxDep) -> list[dict[str, Any]]:
    with c.uow(read=True) as s:
        return [onboarding.to_out(o) for o in onboarding.list_enterprises(s, actor=c.actor)]


@router.post("/enterprises", status_code=status.HTTP_201_CREATED, summary="Onboard an enterprise (operator)")
def onboard(body: EnterpriseIn, c: PrincipalCtxDep) -> dict[str, Any]:
    with c.uow() as s:
        org, principal, token = onboarding.onboard_enterprise(
            s,
            actor=c.actor,
            code=body.code,
            name=body.name,
            public_key_pem=body.sm2_public_key_pem,
            status=body.status,
            principal_name=body.principal_name,
        )
        return {**onboarding.to_out(org), "principal": principal, "token": token}


@router.post(
    "/requests",
    status_code=status.HTTP_201_CREATED,
    response_model=RequestOut,
    summary="Request sandbox access to columns of datasets, with a purpose and a duration",
)
def submit(body: RequestIn, c: PrincipalCtxDep) -> dict[str, Any]:
    kind = "share" if c.actor.role == "department" else "sandbox"
    with c.uow() as s:
        req = requests.submit(
            s,
            actor=c.actor,
            kind=kind,
            columns=body.columns,
            purpose=body.purpose,
            purpose_text=body.purpose_text,
            duration_days=body.duration_days,
            intended_outputs=body.intended_outputs,
        )
        return requests.to_out(s, req)


@router.get("/requests", response_model=list[RequestOut], summary="Your organisation's requests, or those to decide")
def list_requests(
    c: PrincipalCtxDep, scope: Annotated[Literal["mine", "to_decide"], Query()] = "mine"
) -> list[dict[str, Any]]:
    with c.uow(read=True) as s:
        return [requests.to_out(s, r) for r in requests.list_requests(s, actor=c.actor, scope=scope)]


@router.post(
    "/requests/{request_id}/decision",
    response_model=RequestOut,
    summary="Approve or deny (owning department, then the operator); a denial needs a reason",
)
def decide(request_id: Id, body: DecisionIn, c: PrincipalCtxDep) -> dict[str, Any]:
    with c.uow() as s:
        req = requests.decide_request(
            s,
            actor=c.actor,
            request_id=request_id,
            approve=body.decision == "approve",
            reason=body.reason,
            keyring=c.state.keyring,
        )
        return requests.to_out(s, req)


@router.post("/grants/{grant_id}/revoke", summary="Revoke a grant at once")
def revoke(grant_id: Id, body: RevokeIn, c: PrincipalCtxDep) -> dict[str, Any]:
    with c.uow() as s:
        return grants.to_out(grants.revoke(s, actor=c.actor, grant_id=grant_id, reason=body.reason))


@router.post(
    "/shares",
    status_code=status.HTTP_201_CREATED,
    response_model=RequestOut,
    summary="A department asks to share another department's dataset (by its share type)",
)
def share(body: ShareIn, c: PrincipalCtxDep) -> dict[str, Any]:
    with c.uow() as s:
        req = sharing.request_share(
            s,
            actor=c.actor,
            code=body.dataset,
            columns=body.columns,
            purpose=body.purpose,
            purpose_text=body.purpose_text,
            duration_days=body.duration_days,
            keyring=c.state.keyring,
        )
        return requests.to_out(s, req)


@router.get("/shares/{grant_id}/rows", summary="Read a shared dataset, masked for sharing")
def shared_rows(
    grant_id: Id,
    c: PrincipalCtxDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    with c.uow(read=True) as s:
        return sharing.read_shared(
            s,
            actor=c.actor,
            grant_id=grant_id,
            keyring=c.state.keyring,
            data_dir=c.state.data_dir,
            limit=limit,
            offset=offset,
        )


@router.get("/workspaces/{grant_id}", summary="The grant's tables, data dictionaries and masked previews")
def workspace(grant_id: Id, c: PrincipalCtxDep) -> dict[str, Any]:
    with c.uow(read=True) as s:
        return workspaces.workspace(
            s,
            actor=c.actor,
            grant_id=grant_id,
            keyring=c.state.keyring,
            data_dir=c.state.data_dir,
            preload=queries.preloader(c.state.keyring, c.state.data_dir),  # the first query is then warm
        )


@router.post(
    "/workspaces/{grant_id}/queries",
    status_code=status.HTTP_201_CREATED,
    summary="Run one SELECT (DuckDB SQL) on the granted tables; output control decides what leaves",
)
async def run_query(grant_id: Id, body: QueryIn, c: PrincipalCtxDep) -> dict[str, Any]:
    def run() -> dict[str, Any]:
        q = queries.run_query(
            c.uow,
            actor=c.actor,
            grant_id=grant_id,
            sql=body.sql,
            keyring=c.state.keyring,
            data_dir=c.state.data_dir,
        )
        return queries.to_out(q)

    # Its own few threads: queries waiting for a sandbox worker never hold the threads other requests need.
    return await slots.run_in_pool(
        "sandbox",
        slots.SANDBOX_THREADS,
        run,
        wait_s=ADMISSION_WAIT_S,
        busy=lambda: SandboxBusy(f"the sandbox stayed busy for {ADMISSION_WAIT_S:.0f} s; retry shortly"),
    )


@router.get("/workspaces/{grant_id}/queries", summary="The grant's queries, newest first")
def list_queries(grant_id: Id, c: PrincipalCtxDep) -> list[dict[str, Any]]:
    with c.uow(read=True) as s:
        return [queries.to_out(q) for q in queries.list_queries(s, actor=c.actor, grant_id=grant_id)]


@router.get("/queries/{query_id}", summary="A query, output control's decision and reasons, the released result")
def get_query(query_id: Id, c: PrincipalCtxDep) -> dict[str, Any]:
    with c.uow(read=True) as s:
        return queries.to_out(queries.get_query(s, actor=c.actor, query_id=query_id))


@router.post(
    "/queries/{query_id}/export",
    status_code=status.HTTP_201_CREATED,
    summary="Seal a released result for your registered SM2 key (large ones wait for review)",
)
def export(query_id: Id, c: PrincipalCtxDep, body: ExportIn | None = None) -> dict[str, Any]:
    with c.uow() as s:
        e = exports.create_export(
            s,
            actor=c.actor,
            query_id=query_id,
            fmt=(body or ExportIn()).format,
            keyring=c.state.keyring,
            data_dir=c.state.data_dir,
        )
        return exports.to_out(e)


@router.get("/exports", summary="Your organisation's exports, or (operator) those waiting for review")
def list_exports(
    c: PrincipalCtxDep,
    state: Annotated[Literal["pending_review", "released", "refused"] | None, Query()] = None,
) -> list[dict[str, Any]]:
    with c.uow(read=True) as s:
        return [exports.to_out(e) for e in exports.list_exports(s, actor=c.actor, state=state)]


@router.post("/exports/{export_id}/review", summary="Release or refuse an export held for review")
def review(export_id: Id, body: ReviewIn, c: PrincipalCtxDep) -> dict[str, Any]:
    with c.uow() as s:
        e = exports.review_export(
            s, actor=c.actor, export_id=export_id, release=body.decision == "release", reason=body.reason
        )
        return exports.to_out(e)


@router.get(
    "/exports/{export_id}",
    summary="Download a released package (open it with `pdg package decrypt`)",
    response_class=FileResponse,
)
def download(export_id: Id, c: PrincipalCtxDep) -> FileResponse:
    with c.uow(read=True) as s:
        e, path = exports.download_export(s, actor=c.actor, export_id=export_id, data_dir=c.state.data_dir)
    return FileResponse(
        path,
        media_type="application/octet-stream",
        filename=f"export-{e.id}.pdgpkg",
        headers={"X-Package-SM3": e.digest},
    )
