"""Department pages: my datasets, register, publish with upload progress and the quality report, versions."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any, get_args

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import ValidationError
from sqlmodel import select

import identity
from catalog import publish as publishing
from catalog import search, service
from catalog.schemas import Category, DatasetCreate, OpenType, UpdateCycle
from common.errors import BadRequest, Invalid
from gateway.web.render import Web, WebDep, WebRoute, require_signed_in
from policies import resources, vocabulary

router = APIRouter(route_class=WebRoute, include_in_schema=False)
_FLAGS = {"r": "required", "u": "unique"}


@router.get("/my/datasets", response_class=HTMLResponse)
def my_datasets(w: WebDep) -> Response:
    require_signed_in(w)
    with w.uow(read=True) as s:
        res = search.search(s, actor=w.actor, query=search.SearchQuery(sort="code", size=100_000))
    items = [d for d in res.items if d.owner_org == w.actor.org]
    return w.render("my_datasets.html", items=items)


def parse_fields(text: str) -> list[dict[str, Any]]:
    """One field per line: `name | label | type | tag | flags` (flags: r required, u unique)."""
    fields = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = [p.strip() for p in line.replace("｜", "|").split("|")]
        if len(parts) < 2:
            raise Invalid(f"fields line {n}: write `name | label | type | tag | flags`")
        f: dict[str, Any] = {"name": parts[0], "label": parts[1]}
        if len(parts) > 2 and parts[2]:
            f["type"] = parts[2]
        if len(parts) > 3 and parts[3]:
            f["tag"] = parts[3]
        for flag in parts[4] if len(parts) > 4 else "":
            if flag not in _FLAGS:
                raise Invalid(f"fields line {n}: unknown flag {flag!r}; use r (required) and u (unique)")
            f[_FLAGS[flag]] = True
        fields.append(f)
    if not fields:
        raise Invalid("describe at least one field")
    return fields


def _register_page(w: Web, values: dict[str, Any], error: str | None = None, status: int = 200) -> Response:
    return w.render(
        "register.html",
        status=status,
        v=values,
        error=error,
        categories=get_args(Category),
        open_types=get_args(OpenType),
        cycles=get_args(UpdateCycle),
        tags=sorted(vocabulary.default().tags),
    )


_BLANK = {
    "code": "",
    "title": "",
    "description": "",
    "category": "thematic",
    "open_type": "unconditional",
    "share_type": "unconditional",
    "update_cycle": "monthly",
    "keywords": "",
    "key": "",
    "fields": "",
}


@router.get("/datasets/new", response_class=HTMLResponse)
def register_form(w: WebDep) -> Response:
    require_signed_in(w)
    return _register_page(w, dict(_BLANK))


@router.post("/datasets/new", response_class=HTMLResponse)
async def register(w: WebDep) -> Response:
    require_signed_in(w)
    form = await w.form()
    values = {k: str(form.get(k) or d) for k, d in _BLANK.items()}
    try:
        body = DatasetCreate.model_validate(
            {
                **{k: values[k].strip() for k in ("code", "title", "description", "category", "open_type")},
                "share_type": values["share_type"],
                "update_cycle": values["update_cycle"],
                "keywords": [k for k in values["keywords"].replace("，", ",").split(",") if k.strip()],
                "key": values["key"].strip() or None,
                "fields": parse_fields(values["fields"]),
            }
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return _register_page(w, values, f"{where}: {first['msg']}", status=422)
    except Invalid as exc:
        return _register_page(w, values, exc.detail, status=422)
    with w.uow() as s:
        org = s.exec(select(identity.Organisation).where(identity.Organisation.code == w.actor.org)).first()
        ds = service.register(s, actor=w.actor, data=body, org_name=org.name if org else None)
        code = ds.code
    return w.redirect(f"/datasets/{code}/publish")


@router.get("/datasets/{code}/publish", response_class=HTMLResponse)
def publish_form(code: str, w: WebDep) -> Response:
    require_signed_in(w)
    with w.uow(read=True) as s:
        ds = service.read(s, actor=w.actor, code=code)
        if not w.can("dataset:publish", resources.dataset(ds)):
            from common.errors import Denied

            raise Denied(f"not allowed to dataset:publish {code}: only the owning department publishes")
        out = service.to_out(ds)
    return w.render("publish.html", ds=out, report_html=None)


def problems(conformance: Any) -> list[dict[str, Any]]:
    """The conformance findings, whether given as the stored report (a dict) or a bare list."""
    if isinstance(conformance, dict):
        return list(conformance.get("problems") or [])
    return list(conformance or [])


def _report_html(w: Web, *, heading: str, detail: str | None, report: dict[str, Any], accepted: bool) -> str:
    return w.html(
        "report.html",
        heading=heading,
        detail=detail,
        quality=report.get("quality"),
        conformance=problems(report.get("conformance")),
        accepted=accepted,
    )


@router.post("/web/datasets/{code}/publish", response_class=HTMLResponse)
async def publish(code: str, w: WebDep) -> Response:
    """Stream the upload to disk, then the same publish service as the API; JSON for the script, HTML without."""
    require_signed_in(w)
    xhr = w.request.headers.get("x-requested-with") == "XMLHttpRequest"
    uploads = w.state.data_dir / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    dest = uploads / uuid.uuid4().hex
    try:
        form = await w.form()  # multipart parts are spooled to disk by the parser, never held whole
        file = form.get("file")
        if file is None or isinstance(file, str) or not file.filename:
            raise BadRequest("choose a CSV, XLSX or Parquet file to upload")
        limit = w.state.settings.limits.max_upload_bytes
        await run_in_threadpool(publishing.copy_upload, file.file, dest, limit=limit)
        name = file.filename.lower()
        fmt = next((f for f in ("csv", "xlsx", "parquet") if name.endswith("." + f)), None)
        encoding = str(form.get("encoding") or "") or None
        upload = publishing.Upload(path=dest, fmt=fmt, encoding=encoding)
        try:
            version = await run_in_threadpool(
                publishing.publish,
                w.uow,
                actor=w.actor,
                code=code,
                upload=upload,
                data_dir=w.state.data_dir,
                keyring=w.state.keyring,
            )
        except Invalid as exc:
            report = exc.extra.get("report") or {"conformance": exc.extra.get("conformance")}
            fragment = _report_html(w, heading=w.t("pub.refused"), detail=exc.detail, report=report, accepted=False)
            if xhr:
                return w.finish(JSONResponse({"ok": False, "html": fragment}, status_code=422))
            with w.uow() as s:
                out = service.to_out(service.read(s, actor=w.actor, code=code))
            return w.render("publish.html", status=422, ds=out, report_html=fragment)
        target = f"/datasets/{code}/versions/{version.number}/quality"
        if xhr:
            return w.finish(JSONResponse({"ok": True, "redirect": target, "version": version.number}, status_code=201))
        return w.redirect(target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            dest.unlink()


@router.get("/datasets/{code}/versions", response_class=HTMLResponse)
def versions(code: str, w: WebDep) -> Response:
    with w.uow(read=True) as s:
        ds = service.read(s, actor=w.actor, code=code)
        out = service.to_out(ds)
        rows = [service.version_out(v) for v in service.versions(s, actor=w.actor, code=code)]
        res = resources.dataset(ds)
    return w.render(
        "versions.html",
        ds=out,
        versions=rows,
        can_publish=w.actor.role != "public" and w.can("dataset:publish", res),
        can_quality=w.can("dataset:read_quality", res),
    )


@router.get("/datasets/{code}/versions/{number}/quality", response_class=HTMLResponse)
def quality(code: str, number: int, w: WebDep) -> Response:
    with w.uow(read=True) as s:
        rep = service.quality(s, actor=w.actor, code=code, number=number)
    q = rep.get("quality") or {}
    return w.render(
        "quality.html",
        code=code,
        number=number,
        heading=w.t("rep.heading"),
        detail=None,
        quality=q or None,
        conformance=problems(rep.get("conformance")),
        accepted=q.get("verdict") == "accepted",
    )
