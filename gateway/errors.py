"""Every error as application/problem+json (RFC 9457), in one shape. tests/gateway/test_errors.py pins it.

Shape: {"type": "https://pdg.example/problems/<slug>", "title", "status", "detail", "instance",
"request_id", ...extensions}. `detail` says what to fix; it never carries secrets or row values.
"""

from __future__ import annotations

import errno
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from common.errors import DomainError

PROBLEM_BASE = "https://pdg.example/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"
log = logging.getLogger("pdg.errors")

_HTTP_SLUGS = {
    400: ("bad-request", "Bad request"),
    401: ("unauthenticated", "Authentication required"),
    403: ("denied", "Access denied"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    413: ("too-large", "Payload too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    416: ("range-not-satisfiable", "Range not satisfiable"),
    429: ("rate-limited", "Too many requests"),
}


def problem(
    status: int,
    slug: str,
    title: str,
    detail: str,
    *,
    request: Request | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    """The one problem+json response."""
    rid = getattr(request.state, "request_id", None) if request is not None else None
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path if request is not None else None,
        "request_id": rid,
    }
    body.update({k: v for k, v in extensions.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def _validation_detail(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    errors = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        errors.append({"field": loc, "message": err.get("msg", "invalid")})
    first = errors[0] if errors else {"field": "body", "message": "invalid"}
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{first['field']}: {first['message']}{more}", errors


# What any operation may answer with a problem: bad input, no or bad token, denied, missing, conflict,
# gone, too large, wrong media type, timed out, rate limited, storage full. Declared on every operation
# so the OpenAPI document tells clients the truth (tests/reliability/test_schema_fuzz.py holds it to it).
PROBLEM_STATUSES = (400, 401, 403, 404, 408, 409, 410, 413, 415, 422, 429, 431, 507)
PROBLEM_SCHEMA = {
    "title": "Problem",
    "description": "RFC 9457 problem details; extensions (`errors`, `report`, ...) may follow.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": ["string", "null"]},
        "request_id": {"type": ["string", "null"]},
    },
    "additionalProperties": True,
}


def document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """Declare the problem+json answers on every operation (FastAPI's default 422 shape is not ours)."""
    schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    schema["components"]["schemas"].pop("HTTPValidationError", None)
    schema["components"]["schemas"].pop("ValidationError", None)
    content = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for item in schema.get("paths", {}).values():
        for method, op in item.items():
            if method == "parameters":
                continue
            responses = op.setdefault("responses", {})
            for status in PROBLEM_STATUSES:
                title = _HTTP_SLUGS.get(status, ("", _TITLES.get(status, "Problem")))[1]
                responses[str(status)] = {"description": title, "content": content}
    return schema


_TITLES = {
    431: "Request header fields too large",
    408: "Operation timed out",
    409: "Conflict",
    410: "Gone",
    422: "Invalid input",
    507: "Insufficient storage",
}


_FULL = ("no space left on device", "database or disk is full", "disk quota exceeded")


def disk_full(exc: BaseException) -> bool:
    """ENOSPC/EDQUOT anywhere in the cause chain, as errno (OSError) or as text (pyarrow, SQLite)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(text in str(cur).lower() for text in _FULL):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def _refused_value(exc: BaseException) -> bool:
    """A value the caller sent that the database cannot store (SQLAlchemy DataError), anywhere in the chain."""
    from sqlalchemy.exc import DataError

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, DataError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def install(app: FastAPI) -> None:
    """Register the handlers that turn every exception into a problem, and document them."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_problems(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> JSONResponse:
        headers: dict[str, str] = {}
        # Extras that belong in headers, not in the body.
        extra = {k: v for k, v in exc.extra.items() if k not in ("retry_after", "content_range")}
        if "retry_after" in exc.extra:
            headers["Retry-After"] = str(exc.extra["retry_after"])
        if "content_range" in exc.extra:
            headers["Content-Range"] = str(exc.extra["content_range"])
        if exc.status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="pdg"'
        return problem(
            exc.status,
            exc.type_slug,
            exc.title,
            exc.detail,
            request=request,
            headers=headers or None,
            **extra,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail, errors = _validation_detail(exc)
        if any(e["message"].startswith("JSON decode error") for e in errors):
            return problem(
                400,
                "malformed-json",
                "Malformed JSON",
                "the body is not valid JSON: " + detail,
                request=request,
            )
        return problem(422, "invalid", "Invalid input", detail, request=request, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug, title = _HTTP_SLUGS.get(exc.status_code, ("error", "Error"))
        detail = exc.detail if isinstance(exc.detail, str) else title
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no resource at {request.url.path}; see /docs for the API"
        if exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
        return problem(exc.status_code, slug, title, detail, request=request, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        if disk_full(exc):  # not the caller's fault, nor a bug: say so, and nothing was kept
            log.error("storage full", extra={"request_id": getattr(request.state, "request_id", None)})
            return problem(
                507,
                "insufficient-storage",
                "Insufficient storage",
                "the gateway's storage is full; nothing was saved — try again later or tell the operator",
                request=request,
            )
        if _refused_value(exc):
            return problem(
                400,
                "bad-request",
                "Bad request",
                "a value was refused by the database (e.g. a NUL character or a number out of range); correct it",
                request=request,
            )
        log.exception("unhandled error", extra={"request_id": getattr(request.state, "request_id", None)})
        return problem(
            500,
            "internal",
            "Internal error",
            "the gateway failed unexpectedly; quote the request id to the operator",
            request=request,
        )
