"""Operations endpoints: liveness, readiness, metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text

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


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def prometheus() -> Response:
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
