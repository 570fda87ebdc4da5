"""Start-up: migrate, optionally load the demo, then run uvicorn workers."""

from __future__ import annotations

import os
import shutil

import typer

from gateway import db, logs
from gateway.settings import Settings


def prepare(settings: Settings) -> None:
    """Create the data directory and apply migrations (once, before any worker starts)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = db.make_engine(settings.db_url)
    db.upgrade(engine)
    engine.dispose()


def serve(settings: Settings, *, samples: bool) -> None:
    import uvicorn

    logs.configure(settings.log_level)
    prepare(settings)
    if samples:
        from gateway import demo

        demo.print_banner(settings, demo.bootstrap(settings))
    if settings.workers > 1:
        # Aggregate Prometheus metrics across worker processes.
        mdir = settings.data_dir / "metrics"
        shutil.rmtree(mdir, ignore_errors=True)
        mdir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(mdir.resolve())
    typer.echo(f"serving on http://{settings.host}:{settings.port} with {settings.workers} worker(s)", err=True)
    uvicorn.run(
        "gateway.app:create_app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_config=None,
        access_log=False,
        proxy_headers=settings.tls_terminated,
        forwarded_allow_ips="*" if settings.tls_terminated else None,
        h11_max_incomplete_event_size=settings.limits.max_header_bytes,
        timeout_keep_alive=5,
    )
