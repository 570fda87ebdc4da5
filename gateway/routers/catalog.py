"""Catalog: register and describe datasets, publish versions, read quality reports."""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlmodel import select

import identity
from catalog import dcat, search, service
from catalog import publish as publishing
from catalog.schemas import DatasetCreate, DatasetOut, DatasetUpdate, VersionOut
from common.errors import BadRequest, Unsupported
from gateway.deps import CtxDep, Id, PrincipalCtxDep

router = APIRouter()

_CONTENT_TYPES = {
    "text/csv": "csv",
    "application/csv": "csv",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "application/vnd.apache.parquet": "parquet",
    "application/x-parquet": "parquet",
    "application/octet-stream": None,
}


@router.post(
    "/datasets",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetOut,
    summary="Register a dataset for your department",
)
def register(body: DatasetCreate, c: PrincipalCtxDep) -> DatasetOut:
    with c.uow() as s:
        org = s.exec(select(identity.Organisation).where(identity.Organisation.code == c.actor.org)).first()
        ds = service.register(s, actor=c.actor, data=body, org_name=org.name if org else None)
        return service.to_out(ds)


@router.get("/datasets", summary="Search the catalog: full text, facets, sort, pages")
def search_datasets(
    c: CtxDep,
    request: Request,
    q: Annotated[
        str,
        Query(
            max_length=200,
            description="words to find in titles, descriptions, keywords, field labels (Chinese or English)",
        ),
    ] = "",
    category: str | None = None,
    department: str | None = None,
    grade: str | None = None,
    open_type: str | None = None,
    update_cycle: str | None = None,
    format: str | None = None,
    sort: str = "relevance",
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
    size: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    filters = {
        k: v
        for k, v in {
            "category": category,
            "department": department,
            "grade": grade,
            "open_type": open_type,
            "update_cycle": update_cycle,
            "format": format,
        }.items()
        if v is not None
    }
    with c.uow(read=True) as s:
        res = search.search(
            s, actor=c.actor, query=search.SearchQuery(q=q, filters=filters, sort=sort, page=page, size=size)
        )
    next_link = None
    if page * size < res.total:
        next_link = str(request.url.include_query_params(page=page + 1))
    return {
        "data": [service.to_out(d).model_dump(mode="json") for d in res.items],
        "links": {"self": str(request.url), "next": next_link},
        "meta": {"total": res.total, "page": page, "size": size, "facets": res.facets},
    }


_JSONLD = {200: {"content": {"application/ld+json": {"schema": {"type": "object"}}}}}


@router.get("/dcat", summary="The catalog as DCAT-AP 3 JSON-LD", response_class=JSONResponse, responses=_JSONLD)
def dcat_catalog(c: CtxDep, request: Request) -> JSONResponse:
    with c.uow(read=True) as s:
        res = search.search(s, actor=c.actor, query=search.SearchQuery(sort="code", size=100_000))
    return JSONResponse(dcat.catalog_document(res.items, _base(request)), media_type="application/ld+json")


@router.get(
    "/datasets/{code}/dcat", summary="One dataset as DCAT-AP 3 JSON-LD", response_class=JSONResponse, responses=_JSONLD
)
def dcat_dataset(code: str, c: CtxDep, request: Request) -> JSONResponse:
    with c.uow(read=True) as s:
        ds = service.read(s, actor=c.actor, code=code)
    return JSONResponse(dcat.dataset_document(ds, _base(request)), media_type="application/ld+json")


@router.get("/datasets/{code}/dictionary", summary="The data dictionary: fields, tags, what the public sees")
def data_dictionary(code: str, c: CtxDep) -> dict[str, Any]:
    with c.uow(read=True) as s:
        return dcat.dictionary(service.read(s, actor=c.actor, code=code))


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


@router.get("/datasets/{code}", response_model=DatasetOut, summary="A dataset's metadata and data dictionary")
def read(code: str, c: CtxDep) -> DatasetOut:
    with c.uow(read=True) as s:
        return service.to_out(service.read(s, actor=c.actor, code=code))


@router.patch("/datasets/{code}", response_model=DatasetOut, summary="Change a dataset's metadata")
def update(code: str, body: DatasetUpdate, c: PrincipalCtxDep) -> DatasetOut:
    with c.uow() as s:
        return service.to_out(service.update(s, actor=c.actor, code=code, data=body))


@router.get("/datasets/{code}/versions", response_model=list[VersionOut], summary="Published versions")
def versions(code: str, c: CtxDep) -> list[VersionOut]:
    with c.uow(read=True) as s:
        return [service.version_out(v) for v in service.versions(s, actor=c.actor, code=code)]


@router.get("/datasets/{code}/versions/{number}/quality", summary="A version's quality report")
def quality(code: str, number: Id, c: CtxDep) -> dict[str, Any]:
    with c.uow(read=True) as s:
        return service.quality(s, actor=c.actor, code=code, number=number)


@router.post(
    "/datasets/{code}/versions",
    status_code=status.HTTP_201_CREATED,
    response_model=VersionOut,
    summary="Upload and publish a version (CSV, XLSX or Parquet)",
    description="Send the file as the raw body (Content-Type text/csv, the XLSX type, "
    "application/vnd.apache.parquet or application/octet-stream) or as multipart field "
    "`file`. Encoding (utf-8, utf-8-sig, gbk, gb18030) is detected unless given. "
    "A refused upload answers 422 with a `report` saying which rows fail and why.",
)
async def upload_version(
    code: str,
    request: Request,
    c: PrincipalCtxDep,
    format: Annotated[str | None, Query(pattern="^(csv|xlsx|parquet)$")] = None,
    encoding: Annotated[str | None, Query(pattern="^(utf-8|utf-8-sig|gbk|gb18030)$")] = None,
    sheet: Annotated[str | None, Query(max_length=100)] = None,
) -> VersionOut:
    uploads = c.state.data_dir / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    dest = uploads / uuid.uuid4().hex
    try:
        fmt = await _receive(request, dest, c.state.settings.limits.max_upload_bytes)
        upload = publishing.Upload(path=dest, fmt=format or fmt, encoding=encoding, sheet=sheet)
        version = await run_in_threadpool(
            publishing.publish,
            c.uow,
            actor=c.actor,
            code=code,
            upload=upload,
            data_dir=c.state.data_dir,
            keyring=c.state.keyring,
        )
        return service.version_out(version)
    finally:
        with contextlib.suppress(FileNotFoundError):
            dest.unlink()


async def _receive(request: Request, dest: Path, limit: int) -> str | None:
    """Stream the upload to `dest` (never all in memory); returns the format implied by its content type."""
    ctype = (request.headers.get("content-type") or "application/octet-stream").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=10)
        file = form.get("file")
        if file is None or isinstance(file, str):
            raise BadRequest("multipart upload: send the data file in a field named `file`")
        await run_in_threadpool(publishing.copy_upload, file.file, dest, limit=limit)
        await form.close()
        name = (file.filename or "").lower()
        return next((f for f in ("csv", "xlsx", "parquet") if name.endswith("." + f)), None)
    if ctype not in _CONTENT_TYPES:
        raise Unsupported(
            f"content type {ctype!r} is not an upload format; use text/csv, the XLSX type, "
            "application/vnd.apache.parquet or multipart/form-data"
        )
    size = 0
    with open(dest, "wb") as out:
        async for chunk in request.stream():
            size += len(chunk)
            out.write(chunk)
    if size == 0:
        raise BadRequest("the upload is empty: send the file as the request body")
    return _CONTENT_TYPES[ctype]
