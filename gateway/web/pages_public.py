"""Public pages: sign-in/out, the catalog with search and facets, a dataset with its preview, static files."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

import identity
from catalog import dcat, opendata, search, service
from common.errors import DomainError, NotFound, RateLimited, Unauthenticated
from gateway.web import session as sess
from gateway.web.render import WebDep, WebRoute
from policies import resources

router = APIRouter(route_class=WebRoute, include_in_schema=False)
STATIC = Path(__file__).parent / "static"
_STATIC_TYPES = {".css": "text/css", ".js": "text/javascript"}
FACET_NAMES = ("category", "department", "grade", "open_type", "format")
PAGE = 10


@router.get("/static/{name}")
def static(name: str) -> Response:
    path = STATIC / name
    if "/" in name or path.suffix not in _STATIC_TYPES or not path.is_file():
        raise NotFound(f"no static file {name!r}")
    return FileResponse(path, media_type=_STATIC_TYPES[path.suffix], headers={"Cache-Control": "public, max-age=3600"})


def _safe_next(target: str | None) -> str:
    """Only same-site paths: an open redirect after sign-in would be a phishing aid."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@router.get("/login", response_class=HTMLResponse)
def login_form(w: WebDep, next: str = "/") -> Response:
    return w.render("login.html", next=_safe_next(next), error=None)


@router.post("/login", response_class=HTMLResponse)
async def login(w: WebDep) -> Response:
    form = await w.form()
    token = str(form.get("token") or "").strip()
    nxt = _safe_next(str(form.get("next") or "/"))
    state, client = w.state, w.actor.client_addr or "unknown"
    limit = state.settings.limits.auth_failures_per_minute
    if state.limiter.hit(f"authfail:{client}", limit, count=False):
        raise RateLimited(
            "too many failed sign-ins from this address; wait before trying again",
            retry_after=state.limiter.retry_after(f"authfail:{client}"),
        )
    try:
        if not token:
            raise Unauthenticated("empty token")
        with w.uow() as s:
            w.actor = identity.authenticate(s, token, client_addr=client, request_id=w.actor.request_id)
    except Unauthenticated:
        state.limiter.hit(f"authfail:{client}", limit)
        return w.render("login.html", status=401, next=nxt, error=w.t("login.failed"))
    w.start_session(sess.new_session(token))  # a new CSRF token at every sign-in
    return w.redirect(nxt)


@router.post("/logout")
async def logout(w: WebDep) -> Response:
    await w.form()
    w.start_session(sess.new_session())
    return w.redirect("/")


def _href(params: dict[str, Any]) -> str:
    clean = {k: v for k, v in params.items() if v not in (None, "", 1) or (k == "page" and v != 1)}
    return "/?" + urlencode(clean) if clean else "/"


@router.get("/", response_class=HTMLResponse)
def home(w: WebDep, request: Request, q: str = "", sort: str = "relevance", page: int = 1) -> Response:
    filters = {k: v for k in FACET_NAMES if (v := request.query_params.get(k))}
    page = max(1, min(page, 10_000))
    with w.uow(read=True) as s:
        res = search.search(
            s, actor=w.actor, query=search.SearchQuery(q=q[:200], filters=filters, sort=sort, page=page, size=PAGE)
        )
    base = {"q": q, "sort": sort if sort != "relevance" else None, **filters}
    facets = []
    for name in FACET_NAMES:
        values = []
        for value, count in res.facets.get(name, {}).items():
            active = filters.get(name) == value
            values.append((value, count, _href({**base, name: None if active else value}), active))
        facets.append((name, values))
    return w.render(
        "home.html",
        q=q,
        sort=sort,
        sorts=sorted(search.SORTS),
        filters=filters,
        facets=facets,
        items=res.items,
        total=res.total,
        t_value=lambda name, v: _facet_label(w, name, v),
        prev_href=_href({**base, "page": page - 1}) if page > 1 else None,
        next_href=_href({**base, "page": page + 1}) if page * PAGE < res.total else None,
    )


def _facet_label(w: Any, name: str, value: str) -> str:
    prefix = {"category": "category.", "open_type": "open.", "grade": "grade."}.get(name)
    return f"{value} · {w.t(prefix + value)}" if name == "grade" else (w.t(prefix + value) if prefix else value)


def _examples(request: Request, code: str) -> list[tuple[str, str]]:
    base = str(request.base_url).rstrip("/")
    rows = f"{base}/api/v1/open/datasets/{code}/rows?_size=100"
    return [
        ("ds.ex.rows", f"curl -s {shlex.quote(rows)}"),
        ("ds.ex.csv", f"curl -sOJ {shlex.quote(f'{base}/api/v1/open/datasets/{code}/download.csv')}"),
        ("ds.ex.meta", f"curl -s {shlex.quote(f'{base}/api/v1/catalog/datasets/{code}')}"),
        ("ds.ex.token", f'curl -s -H "Authorization: Bearer $PDG_TOKEN" {shlex.quote(rows)}'),
    ]


@router.get("/datasets/{code}", response_class=HTMLResponse)
def dataset(code: str, w: WebDep, request: Request) -> Response:
    with w.uow(read=True) as s:
        ds = service.read(s, actor=w.actor, code=code)
        out = service.to_out(ds)
        res = resources.dataset(ds)
        preview = None
        if ds.open_type == "unconditional" and ds.current_version is not None:
            try:
                page = opendata.rows(
                    s,
                    actor=w.actor,
                    code=code,
                    params=[("_size", "10")],
                    data_dir=w.state.data_dir,
                    cursor_key=w.state.secret_key,
                    max_size=10,
                )
                cols = list(page.data[0].keys()) if page.data else []
                preview = {"columns": cols, "data": page.data}
            except DomainError:
                preview = None  # metadata stays readable even when rows are not (e.g. no open edition yet)
    dictionary = [
        {**f, "public": w.t("mask." + f["public_masking"]) if f["in_open_edition"] else w.t("mask.suppress")}
        for f in dcat.dictionary(ds)["fields"]
    ]
    actions = []
    if w.actor.role != "public":
        if w.can("dataset:publish", res):
            actions += [(f"/datasets/{code}/publish", "ds.publish"), (f"/datasets/{code}/versions", "ds.versions")]
        if w.actor.role == "enterprise" and ds.open_type == "conditional" and w.can("request:create", res):
            actions.append((f"/requests/new?dataset={code}", "ds.apply"))
    quality_href = None
    if ds.current_version and w.actor.role != "public" and w.can("dataset:read_quality", res):
        quality_href = f"/datasets/{code}/versions/{ds.current_version}/quality"
    return w.render(
        "dataset.html",
        ds=out,
        dictionary=dictionary,
        preview=preview,
        examples=_examples(request, code),
        actions=actions,
        quality_href=quality_href,
    )
