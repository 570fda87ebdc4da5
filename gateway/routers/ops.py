"""Operations endpoints: liveness, readiness, metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text

from common.errors import NotFound
from gateway import db, metrics
from gateway.deps import StateDep

router = APIRouter(tags=["ops"])


@router.get("/health", summary="Liveness: the process answers")
def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", summary="Readiness: database reachable, migrations current, keys and policies loaded")
def ready(state: StateDep) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        with state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
        current, head = db.current_revision(state.engine), db.head_revision()
        checks["migrations"] = "ok" if current == head else f"at {current}, expected {head}: run `pdg db upgrade`"
    except Exception as exc:
        checks["database"] = f"unreachable ({type(exc).__name__})"
        checks["migrations"] = "unknown"
    checks["keys"] = "ok" if state.keyring is not None else "missing"
    checks["policies"] = "ok" if state.policy_engine is not None else "missing"
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503)


# Set by every proxy (the Ingress controller always adds X-Forwarded-For); a scrape straight to the pod has none.
_PROXIED = ("x-forwarded-for", "x-real-ip", "forwarded")


@router.get("/metrics", summary="Prometheus metrics (scraped at the pod, not via the proxy)", response_class=Response)
def prometheus(request: Request, state: StateDep) -> Response:
    if state.settings.tls_terminated and any(h in request.headers for h in _PROXIED):
        # Behind the Ingress, /metrics is for the monitoring namespace only (NetworkPolicy), not the public.
        raise NotFound("no such page; metrics are scraped from the pod, not through the proxy")
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
