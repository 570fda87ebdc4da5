"""Auditor pages: log search with filters, a record with its verified inclusion proof, alerts, export, verify."""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import uuid
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, Response

from audit import merkle
from audit.search import AuditQuery
from common.errors import BadRequest, Invalid
from gateway.web.render import SHANGHAI, Web, WebDep, WebRoute, require_signed_in
from oversight import service

router = APIRouter(route_class=WebRoute, include_in_schema=False)
FILTERS = ("principal", "org", "action", "dataset", "decision", "since", "until")
PAGE = 50


def _day(value: str | None, name: str) -> datetime | None:
    """A date typed in the form means that day in Asia/Shanghai."""
    if not value:
        return None
    try:
        return datetime.combine(datetime.strptime(value, "%Y-%m-%d").date(), time(), tzinfo=SHANGHAI)
    except ValueError:
        raise Invalid(f"{name}: a date as YYYY-MM-DD") from None


@router.get("/audit", response_class=HTMLResponse)
def search(w: WebDep, request: Request, before_seq: int | None = None, message: str | None = None) -> Response:
    require_signed_in(w)
    f = {k: (request.query_params.get(k) or "").strip()[:200] or None for k in FILTERS}
    until = _day(f["until"], "until")
    q = AuditQuery(
        principal=f["principal"],
        org=f["org"],
        action=f["action"],
        dataset=f["dataset"],
        allowed=None if f["decision"] not in ("allowed", "denied") else f["decision"] == "allowed",
        since=_day(f["since"], "since"),
        until=until + timedelta(days=1) if until else None,  # the whole "until" day is included
        before_seq=before_seq if before_seq and before_seq > 0 else None,
        limit=PAGE,
    )
    with w.uow(read=True) as s:
        page = service.search_events(s, actor=w.actor, query=q)
        records = list(page.items)
    next_href = None
    if page.next_before_seq:
        next_href = "/audit?" + urlencode({**{k: v for k, v in f.items() if v}, "before_seq": page.next_before_seq})
    return w.render(
        "audit.html",
        f=f,
        records=records,
        next_href=next_href,
        can_checkpoint=w.can("audit:checkpoint", _log()),
        message=w.t("aud.signed") if message == "signed" else None,
    )


def _log() -> Any:
    from policies import resources

    return resources.audit_log()


@router.post("/audit/checkpoints")
async def sign(w: WebDep) -> Response:
    require_signed_in(w)
    await w.form()
    with w.uow() as s:
        service.sign_now(s, actor=w.actor, keyring=w.state.keyring)
    return w.redirect("/audit?message=signed")


def proof_status(rec: Any, proof: dict[str, Any] | None) -> bool:
    """Check the inclusion proof here too, so the page says 'verified', not merely 'a proof exists'."""
    if proof is None:
        return False
    try:
        merkle.verify_inclusion(
            bytes.fromhex(rec.leaf_hash),
            rec.seq - 1,
            proof["tree_size"],
            [bytes.fromhex(h) for h in proof["path"]],
            bytes.fromhex(proof["root_hash"]),
        )
    except Exception:
        return False
    return True


@router.get("/audit/alerts", response_class=HTMLResponse)
def alerts(w: WebDep) -> Response:
    require_signed_in(w)
    with w.uow(read=True) as s:
        found = service.list_alerts(s, actor=w.actor, limit=200)
    return w.render("alerts.html", alerts=found)


@router.get("/audit/verify", response_class=HTMLResponse)
def verify_form(w: WebDep) -> Response:
    require_signed_in(w)
    if not w.can("audit:search", _log()):
        from common.errors import Denied

        raise Denied("verifying exports is for auditors")
    return w.render("verify.html", result=None)


def _scratch(w: Web) -> Path:
    d = w.state.data_dir / "tmp"
    d.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=d))


@router.post("/web/audit/verify", response_class=HTMLResponse)
async def verify(w: WebDep) -> Response:
    require_signed_in(w)
    tmp = _scratch(w)
    try:
        form = await w.form()
        file = form.get("file")
        if file is None or isinstance(file, str) or not file.filename:
            raise BadRequest("choose the export zip to verify")
        path = tmp / "export.zip"
        with open(path, "wb") as out:
            await run_in_threadpool(shutil.copyfileobj, file.file, out)
        if path.stat().st_size == 0:
            raise BadRequest("the uploaded file is empty")

        def run() -> Any:
            with w.uow() as s:
                return service.verify_upload(s, actor=w.actor, path=path, public_keys=w.state.keyring.public_keys)

        result = await run_in_threadpool(run)
        return w.render("verify.html", result=result)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@router.get("/audit/export")
def export(w: WebDep, background: BackgroundTasks) -> Response:
    require_signed_in(w)
    tmp = _scratch(w)
    out = tmp / f"audit-export-{uuid.uuid4().hex[:8]}.zip"
    background.add_task(shutil.rmtree, tmp, True)
    try:
        with w.uow(read=True) as s:
            service.export_log(s, actor=w.actor, out=out)
    except Exception:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
        raise
    return FileResponse(out, media_type="application/zip", filename=out.name, headers={"Cache-Control": "no-store"})


@router.get("/audit/{seq}", response_class=HTMLResponse)
def record(seq: int, w: WebDep) -> Response:
    require_signed_in(w)
    with w.uow(read=True) as s:
        rec, proof = service.event(s, actor=w.actor, seq=seq)
        verified = proof_status(rec, proof)
        reasons = json.loads(rec.reasons)
        outcome = json.dumps(json.loads(rec.outcome), ensure_ascii=False, indent=1)
    return w.render("audit_record.html", r=rec, proof=proof if verified else None, reasons=reasons, outcome=outcome)
