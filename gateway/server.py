"""Start-up: migrate, optionally load the demo, then run uvicorn workers."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from datetime import timedelta

import typer

from common import clock
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
    start_housekeeping(settings)
    typer.echo(
        f"serving on http://{settings.host}:{settings.port} with {settings.workers} worker(s)", err=True
    )
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
        # Workers import pandas, pyarrow and duckdb; on a busy 2-core host that exceeds uvicorn's 5 s default.
        timeout_worker_healthcheck=60,
    )


def start_housekeeping(settings: Settings) -> threading.Thread:
    """One thread per replica: sign checkpoints when due and raise risk alerts.

    Runs in the supervising process, not in each worker; with several replicas each signs when due,
    which is harmless (a checkpoint is a signed statement about a prefix of one chain).
    """
    from gateway.state import load_keyring
    from oversight import service

    engine = db.make_engine(settings.db_url, pool_size=1)
    keyring = load_keyring(settings)
    interval = timedelta(seconds=settings.checkpoint_interval_seconds)
    tick = min(30.0, float(settings.checkpoint_interval_seconds))
    log = logging.getLogger("pdg.housekeeping")

    def loop() -> None:
        since = clock.now() - timedelta(hours=1)
        while True:
            time.sleep(tick)
            try:
                with db.unit_of_work(engine) as s:
                    done = service.housekeeping(s, keyring=keyring, interval=interval, since=since)
                if done["checkpoint"] or done["alerts"]:
                    log.info("housekeeping", extra={"event": done})
                since = clock.now() - timedelta(hours=1)
            except Exception:  # keep the timer alive; the failure is in the log
                log.exception("housekeeping failed")

    thread = threading.Thread(target=loop, name="pdg-housekeeping", daemon=True)
    thread.start()
    return thread
