"""Sandbox pages: apply with a purpose, the approvals queue, workspaces with a SQL editor, exports, enterprises."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, Response

from catalog import service
from common.errors import Denied, DomainError, Invalid
from gateway.web.render import Web, WebDep, WebRoute, require_signed_in
from policies import resources
from sandbox import exports, onboarding, queries, requests, workspaces

router = APIRouter(route_class=WebRoute, include_in_schema=False)


def _role(w: Web, *roles: str) -> None:
    require_signed_in(w)
    if w.actor.role not in roles:
        raise Denied(f"this page is for {' or '.join(roles)} users; you are signed in as {w.actor.role}")


@router.get("/requests", response_class=HTMLResponse)
def request_list(w: WebDep) -> Response:
    _role(w, "department", "operator", "enterprise")
    with w.uow(read=True) as s:
        mine = to_decide = None
        if w.actor.role in ("department", "operator"):
            to_decide = [requests.to_out(s, r) for r in requests.list_requests(s, actor=w.actor, scope="to_decide")]
        if w.actor.role in ("department", "enterprise"):
            mine = [requests.to_out(s, r) for r in requests.list_requests(s, actor=w.actor, scope="mine")]
    key = "nav.my_requests" if w.actor.role == "enterprise" else "nav.approvals"
    return w.render("requests.html", title_key=key, mine=mine, to_decide=to_decide)


@router.post("/requests/{request_id}/decision")
async def decide(request_id: int, w: WebDep) -> Response:
    _role(w, "department", "operator")
    form = await w.form()
    decision = form.get("decision")
    if decision not in ("approve", "deny"):
        raise Invalid("choose approve or deny")
    with w.uow() as s:
        requests.decide_request(
            s,
            actor=w.actor,
            request_id=request_id,
            approve=decision == "approve",
            reason=str(form.get("reason") or ""),
            keyring=w.state.keyring,
        )
    return w.redirect("/requests")


_REQ_BLANK = {"purpose": "", "purpose_text": "", "outputs": "", "duration_days": "30"}


def _request_page(w: Web, code: str, values: dict[str, Any], chosen: list[str], error: str | None = None) -> Response:
    with w.uow() as s:
        ds = service.to_out(service.read(s, actor=w.actor, code=code))
    return w.render("request_new.html", status=422 if error else 200, ds=ds, v=values, chosen=chosen, error=error)


@router.get("/requests/new", response_class=HTMLResponse)
def request_form(w: WebDep, dataset: str) -> Response:
    _role(w, "enterprise")
    return _request_page(w, dataset, dict(_REQ_BLANK), [])


@router.post("/requests/new", response_class=HTMLResponse)
async def request_submit(w: WebDep) -> Response:
    _role(w, "enterprise")
    form = await w.form()
    code = str(form.get("dataset") or "")
    cols = form.get("columns") or []
    cols = [cols] if isinstance(cols, str) else [str(c) for c in cols]
    values = {k: str(form.get(k) or d) for k, d in _REQ_BLANK.items()}
    try:
        days = int(values["duration_days"])
    except ValueError:
        return _request_page(w, code, values, cols, "duration_days: a whole number of days, 1..365")
    try:
        with w.uow() as s:
            requests.submit(
                s,
                actor=w.actor,
                kind="sandbox",
                columns={code: cols},
                purpose=values["purpose"].strip(),
                purpose_text=values["purpose_text"],
                duration_days=days,
                intended_outputs=[values["outputs"].strip()] if values["outputs"].strip() else [],
            )
    except Invalid as exc:
        return _request_page(w, code, values, cols, exc.detail)
    return w.redirect("/requests")


@router.get("/workspaces/{grant_id}", response_class=HTMLResponse)
def workspace(grant_id: int, w: WebDep, sql: str = "") -> Response:
    _role(w, "enterprise")
    with w.uow(read=True) as s:
        ws = workspaces.workspace(
            s,
            actor=w.actor,
            grant_id=grant_id,
            keyring=w.state.keyring,
            data_dir=w.state.data_dir,
            preload=queries.preloader(w.state.keyring, w.state.data_dir),  # the first query is then warm
        )
        qs = [queries.to_out(q) for q in queries.list_queries(s, actor=w.actor, grant_id=grant_id)]
    if not sql and ws["tables"]:
        first = ws["tables"][0]
        col = next((c["name"] for c in first["columns"] if c.get("tag") in ("gender", "admin_code")), None)
        col = col or first["columns"][0]["name"]
        sql = f"SELECT {col}, COUNT(*) AS n\nFROM {first['table']}\nGROUP BY {col}"
    return w.render("workspace.html", grant=ws["grant"], tables=ws["tables"], queries=qs, sql=sql)


@router.post("/workspaces/{grant_id}/queries")
async def run(grant_id: int, w: WebDep) -> Response:
    _role(w, "enterprise")
    form = await w.form()
    sql = str(form.get("sql") or "").strip()
    if not sql or len(sql) > 20_000:
        raise Invalid("write one SELECT statement (at most 20 000 characters)")
    q = await run_in_threadpool(
        queries.run_query,
        w.uow,
        actor=w.actor,
        grant_id=grant_id,
        sql=sql,
        keyring=w.state.keyring,
        data_dir=w.state.data_dir,
    )
    return w.redirect(f"/queries/{q.id}")


@router.get("/queries/{query_id}", response_class=HTMLResponse)
def query(query_id: int, w: WebDep) -> Response:
    _role(w, "enterprise")
    with w.uow(read=True) as s:
        q = queries.to_out(queries.get_query(s, actor=w.actor, query_id=query_id))
    result = q.get("result") if q.get("decision") == "released" else None
    return w.render("query.html", q=q, result=result, can_export=result is not None)


@router.post("/queries/{query_id}/export")
async def export(query_id: int, w: WebDep) -> Response:
    _role(w, "enterprise")
    form = await w.form()
    fmt = str(form.get("format") or "csv")
    if fmt not in ("csv", "parquet"):
        raise Invalid("format must be csv or parquet")
    with w.uow() as s:
        exports.create_export(
            s, actor=w.actor, query_id=query_id, fmt=fmt, keyring=w.state.keyring, data_dir=w.state.data_dir
        )
    return w.redirect("/exports")


@router.get("/exports", response_class=HTMLResponse)
def export_list(w: WebDep) -> Response:
    _role(w, "enterprise", "operator")
    with w.uow(read=True) as s:
        rows = [exports.to_out(e) for e in exports.list_exports(s, actor=w.actor)]
    key = "nav.exports" if w.actor.role == "enterprise" else "nav.export_review"
    return w.render("exports.html", title_key=key, exports=rows, can_review=w.actor.role == "operator")


@router.post("/exports/{export_id}/review")
async def review(export_id: int, w: WebDep) -> Response:
    _role(w, "operator")
    form = await w.form()
    decision = form.get("decision")
    if decision not in ("release", "refuse"):
        raise Invalid("choose release or refuse")
    with w.uow() as s:
        exports.review_export(
            s, actor=w.actor, export_id=export_id, release=decision == "release", reason=str(form.get("reason") or "")
        )
    return w.redirect("/exports")


@router.get("/exports/{export_id}/download")
def download(export_id: int, w: WebDep) -> Response:
    _role(w, "enterprise")
    with w.uow(read=True) as s:
        e, path = exports.download_export(s, actor=w.actor, export_id=export_id, data_dir=w.state.data_dir)
    return FileResponse(
        path,
        media_type="application/octet-stream",
        filename=f"export-{e.id}.pdgpkg",
        headers={"X-Package-SM3": e.digest, "Cache-Control": "no-store"},
    )


_ENT_BLANK = {"code": "", "name": "", "pem": "", "principal_name": ""}


def _enterprises(w: Web, *, values: dict[str, str], created: Any = None, error: str | None = None) -> Response:
    with w.uow(read=True) as s:
        orgs = onboarding.list_enterprises(s, actor=w.actor)
        rows = [
            {"code": o.code, "name": o.name, "status": o.status, "has_key": bool(o.sm2_public_key_pem)} for o in orgs
        ]
    return w.render("enterprises.html", status=422 if error else 200, orgs=rows, v=values, created=created, error=error)


def _may_onboard(w: Web) -> None:
    require_signed_in(w)
    if not w.can("enterprise:onboard", resources.organisation("new", "enterprise")):
        raise Denied("only the authorised operator onboards enterprises")


@router.get("/enterprises", response_class=HTMLResponse)
def enterprises(w: WebDep) -> Response:
    _may_onboard(w)
    return _enterprises(w, values=dict(_ENT_BLANK))


@router.post("/enterprises", response_class=HTMLResponse)
async def onboard(w: WebDep) -> Response:
    _may_onboard(w)
    form = await w.form()
    values = {k: str(form.get(k) or "") for k in _ENT_BLANK}
    try:
        with w.uow() as s:
            org, _, token = onboarding.onboard_enterprise(
                s,
                actor=w.actor,
                code=values["code"].strip(),
                name=values["name"],
                public_key_pem=values["pem"].strip(),
                principal_name=values["principal_name"].strip() or None,
            )
            created = {"code": org.code, "token": token}
    except (Invalid, DomainError) as exc:
        if isinstance(exc, Denied):
            raise
        return _enterprises(w, values=values, error=exc.detail)
    return _enterprises(w, values=dict(_ENT_BLANK), created=created)
