"""The FastAPI app factory. Routers are laid out per DESIGN.md §7, each filled by its own module."""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from common.heap import freeze_startup_heap
from gateway import errors
from gateway.middleware import GatewayMiddleware
from gateway.settings import Settings, get_settings
from gateway.state import AppState, build_state

API = "/api/v1"
# Upload endpoints get the upload size limit; every other body gets the (small) JSON limit.
UPLOAD_PATHS = re.compile(r"^/api/v1/catalog/datasets/[^/]+/versions$|^/api/v1/audit/verify$|^/web/")


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    import anyio.to_thread

    # Sync handlers run in this pool; sandbox queries have their own (gateway.slots), so none starves it.
    settings = app.state.pdg.settings
    # A thread back from SQLite or a socket waits up to the switch interval for the GIL while another
    # runs Python. At the default 5 ms the audit committer, which takes it four times per batch, spent
    # ~11 ms per batch waiting under 16 clients; at 1 ms row pages serve 1.5x the requests with half the p99.
    sys.setswitchinterval(0.001)
    anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threads
    if getattr(app.state, "freeze_heap", False):
        freeze_startup_heap()
    if settings.sandbox_warm:
        threading.Thread(target=_warm_sandbox, name="pdg-sandbox-warm", daemon=True).start()
    yield
    from sandbox import queries

    queries.shutdown_runner()  # stop the warm sandbox worker processes with the app


def _warm_sandbox() -> None:
    from sandbox import queries

    try:
        runner = queries.default_runner()
        runner.warm_up(workers=runner.pool_size)
    except Exception:  # a failed warm-up only means the first query starts the worker, as before
        logging.getLogger("pdg.sandbox").warning("sandbox worker warm-up failed", exc_info=True)


def create_app(settings: Settings | None = None, *, state: AppState | None = None) -> FastAPI:
    """Build the gateway app. Migrations are applied by the CLI before serving, never per worker."""
    settings = settings or get_settings()
    state = state or build_state(settings)
    app = FastAPI(
        title="Public Data Gateway",
        version="0.1.0",
        description="Register, grade, open, share and operate public data, verifiably (SM2/SM3/SM4).",
        openapi_url=f"{API}/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        lifespan=_lifespan,
    )
    app.state.pdg = state
    errors.install(app)
    _include_routers(app)
    app.add_middleware(
        GatewayMiddleware,
        max_json_bytes=settings.limits.max_json_bytes,
        max_upload_bytes=settings.limits.max_upload_bytes,
        max_header_bytes=settings.limits.max_header_bytes,
        upload_path=UPLOAD_PATHS,
    )
    return app


def _include_routers(app: FastAPI) -> None:
    from gateway.routers import admin, ops

    app.include_router(ops.router)
    app.include_router(admin.router, prefix=f"{API}/admin", tags=["admin"])
    app.include_router(admin.me_router, prefix=API, tags=["admin"])
    for name in ("catalog", "open", "sandbox", "audit", "range", "web"):
        module = _optional_router(name)
        if module is not None:
            prefix = "" if name == "web" else f"{API}/{name}"
            app.include_router(module.router, prefix=prefix, tags=[name])


def _optional_router(name: str):
    import importlib

    try:
        return importlib.import_module(f"gateway.routers.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"gateway.routers.{name}":
            return None
        raise


def create_app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` workers: settings from the environment."""
    from gateway import logs

    settings = get_settings()
    logs.configure(settings.log_level)
    app = create_app(settings)
    app.state.freeze_heap = True  # a serving process; not in tests, whose heaps come and go
    return app
