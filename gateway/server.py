"""Start-up: migrate, optionally load the demo, then run uvicorn workers."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import typer
from sqlalchemy.engine import Engine

from common import clock
from common.heap import freeze_startup_heap
from gateway import db, listening, logs
from gateway.settings import Settings


def prepare(settings: Settings) -> None:
    """Create the data directory, apply migrations and clear what a crash left (once, before any worker starts)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = db.make_engine(settings.db_url)
    db.upgrade(engine)
    removed = recover(settings.data_dir, engine)
    engine.dispose()
    if removed:
        logging.getLogger("pdg.recovery").warning(
            "removed what an interrupted run left behind", extra={"event": {"paths": [str(p) for p in removed]}}
        )


# Work areas whose every entry belongs to a request in flight; none survives a restart.
_SCRATCH_DIRS = ("staging", "uploads", "tmp")


def recover(data_dir: Path, engine: Engine) -> list[Path]:
    """Remove files no committed row refers to: staging and scratch leftovers, version directories and
    export packages renamed into place by a transaction that never committed (killed, crashed).

    Runs before any worker serves. With several replicas on one shared data directory it must run only
    where no publish is in flight (one replica at a time, as a rolling restart does).
    """
    from sqlmodel import Session, select

    from catalog import storage
    from catalog.models import Dataset, DatasetVersion
    from sandbox.exports import EXPORTS_DIR
    from sandbox.models import Export

    with Session(engine) as s:
        committed = s.exec(
            select(Dataset.code, DatasetVersion.number).where(DatasetVersion.dataset_id == Dataset.id)
        ).all()
        packages = {p for p in s.exec(select(Export.path)).all() if p}
    removed = storage.sweep(data_dir, committed)
    for name in _SCRATCH_DIRS[1:]:  # storage.sweep() already cleared staging/
        root = data_dir / name
        for child in root.iterdir() if root.is_dir() else ():
            _remove(child)
            removed.append(child)
    exports = data_dir / EXPORTS_DIR
    for child in exports.iterdir() if exports.is_dir() else ():
        if f"{EXPORTS_DIR}/{child.name}" not in packages:
            _remove(child)
            removed.append(child)
    return removed


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


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
    # glibc gives each thread its own malloc arena; with a thread pool and Arrow buffers that fragments
    # into GBs of RSS under load. Two arenas keep memory flat (workers read this when they start).
    os.environ.setdefault("MALLOC_ARENA_MAX", "2")
    start_housekeeping(settings)
    freeze_startup_heap()  # the supervisor's too: its housekeeping commits audit records under the same turn
    typer.echo(f"serving on http://{settings.host}:{settings.port} with {settings.workers} worker(s)", err=True)
    options: dict[str, Any] = dict(
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
    if settings.workers > 1 and listening.available():
        _serve_workers(uvicorn.Config(APP, **options))
    else:
        uvicorn.run(APP, **options)


APP = "gateway.app:create_app_from_env"


def _serve_workers(config: Any) -> None:
    """uvicorn's supervisor with a listening socket per worker (gateway/listening.py says why)."""
    from uvicorn.supervisors import Multiprocess

    try:
        sock = listening.port_group(config.host, config.port)
    except OSError as exc:
        raise SystemExit(f"cannot listen on {config.host}:{config.port}: {exc.strerror}") from None
    logging.getLogger("uvicorn.error").info(
        "listening on http://%s:%d with a socket per worker", config.host, sock.getsockname()[1]
    )
    try:
        Multiprocess(config, sockets=[sock]).run()
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()


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

    def uow(read: bool = False) -> Any:
        return db.unit_of_work(engine, read=read)

    def loop() -> None:
        since, seen = clock.now() - timedelta(hours=1), 0
        while True:
            time.sleep(tick)
            try:
                done = service.housekeeping(uow, keyring=keyring, interval=interval, since=since, after_seq=seen)
                if done["checkpoint"] or done["alerts"]:
                    log.info("housekeeping", extra={"event": done})
                since, seen = clock.now() - timedelta(hours=1), done["seen"]
            except Exception:  # keep the timer alive; the failure is in the log
                log.exception("housekeeping failed")

    thread = threading.Thread(target=loop, name="pdg-housekeeping", daemon=True)
    thread.start()
    return thread
