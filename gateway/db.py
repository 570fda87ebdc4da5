"""Database engine, sessions and the unit of work shared by HTTP handlers, the CLI and jobs.

SQLite (embedded default) runs in WAL mode with synchronous=FULL and takes the write lock at BEGIN
(`BEGIN IMMEDIATE`), so audit appends are serialised and a transaction never fails half-way on lock
upgrade. PostgreSQL serialises audit appends with an advisory lock inside the audit layer.
"""

from __future__ import annotations

import queue
import threading
import weakref
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlmodel import Session, create_engine

from common.errors import DomainError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def make_engine(url: str, *, pool_size: int = 10, max_connections: int | None = None) -> Engine:
    """An engine for `url` with the gateway's connection settings.

    `max_connections` caps the pool (default twice `pool_size`); a serving process sizes it to its threads,
    so no handler thread ever waits for a connection another thread could have had.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        _configure_sqlite(engine)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        url = str(parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False))
    overflow = max(0, (max_connections or 2 * pool_size) - pool_size)
    return create_engine(url, pool_pre_ping=True, pool_size=pool_size, max_overflow=overflow)


def _configure_sqlite(engine: Engine, *, read_only: bool = False) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        if read_only:
            cur.execute("PRAGMA query_only=ON")  # a read unit of work that tries to write fails loudly
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take the lock up front (no failed upgrade half-way); readers never block anyone (WAL).
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


_READERS: weakref.WeakKeyDictionary[Engine, Engine] = weakref.WeakKeyDictionary()


def reader_for(engine: Engine) -> Engine:
    """The engine read units of work use: on SQLite a companion without the write lock; else the same."""
    if engine.dialect.name != "sqlite":
        return engine
    reader = _READERS.get(engine)
    if reader is None:
        reader = create_engine(engine.url, connect_args={"check_same_thread": False, "timeout": 30})
        _configure_sqlite(reader, read_only=True)
        _READERS[engine] = reader
    return reader


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


@contextmanager
def unit_of_work(engine: Engine, *, read: bool = False) -> Iterator[Session]:
    """One transaction: commit on success, roll back on error.

    `read=True` is for requests that change nothing but the log (rows, searches, audit reads): the
    transaction holds no write lock, and the audit entries of its decisions are written in one short
    write transaction right after it, before the caller gets anything back.

    A domain error that carries a pending audit entry (a denial, a rejected upload) is recorded in a
    fresh transaction after the rollback, so refusals are in the log while nothing else persists.
    Services that put files in place before the commit register undo callbacks in
    `session.info["on_rollback"]`; they run when the transaction does not commit.
    """
    session = Session(reader_for(engine) if read else engine, expire_on_commit=False)
    if read:
        session.info["read_only"] = True
        if engine.dialect.name == "postgresql":
            event.listen(session, "after_begin", _read_only_transaction)
    try:
        yield session
        session.commit()
        _write_pending_audit(engine, session.info.pop("pending_audit", []))
    except DomainError as exc:
        _rollback(session)
        _record_refusal(engine, exc)
        raise
    except BaseException:
        _rollback(session)
        raise
    finally:
        session.close()


def _read_only_transaction(_session: Any, _transaction: Any, connection: Any) -> None:
    connection.exec_driver_sql("SET TRANSACTION READ ONLY")


def _write_pending_audit(engine: Engine, entries: list[dict[str, Any]]) -> None:
    """Write entries through the engine's group committer and wait until they are durable.

    Validation and the hashing that needs no place in the log happen here, in the caller's thread (a bad
    entry fails its own request at once); the committer only numbers, chains and inserts.
    """
    if entries:
        from audit.log import prepare

        _submit(engine, [prepare(**e) for e in entries]).result(timeout=120)


IDLE_EXIT_S = 30.0


class _GroupCommitter:
    """One thread per engine appends queued audit entries, many requests' worth per transaction.

    Each caller waits for the commit that holds its entries (so nothing is answered unlogged); one
    fsync then covers a whole batch instead of one per request, and writers no longer queue on the
    database lock. A batch that fails is retried entry by entry so one bad entry fails only its caller.
    """

    MAX_BATCH = 512

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.conn: Connection | None = None  # kept across batches: no pool checkout (and ping) per batch
        self.queue: queue.Queue[tuple[list[Any], Future[None]]] = queue.Queue()
        threading.Thread(target=self._run, name="pdg-audit-commit", daemon=True).start()

    def submit(self, entries: list[Any]) -> Future[None]:
        fut: Future[None] = Future()
        self.queue.put((entries, fut))
        return fut

    def _run(self) -> None:
        while True:
            try:
                first = self.queue.get(timeout=IDLE_EXIT_S)
            except queue.Empty:
                with _COMMITTERS_LOCK:  # idle: retire; the next submit starts a fresh committer
                    if self.queue.empty():
                        _COMMITTERS.pop(self.engine, None)
                        if self.conn is not None:
                            self.conn.close()
                        return
                continue
            batch = [first]
            while len(batch) < self.MAX_BATCH:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._write([e for entries, _ in batch for e in entries])
            except Exception:  # isolate the failing submission
                for entries, fut in batch:
                    try:
                        self._write(entries)
                        fut.set_result(None)
                    except Exception as exc:
                        fut.set_exception(exc)
                continue
            for _, fut in batch:
                fut.set_result(None)

    def _write(self, entries: list[Any]) -> None:
        from audit.log import append

        if self.conn is None or self.conn.closed or self.conn.invalidated:
            self.conn = self.engine.connect()
        try:
            with Session(bind=self.conn, expire_on_commit=False) as session:
                append(session, entries)  # one head read, one multi-row INSERT, one commit (fsync)
                session.commit()
        except Exception:
            self.conn.close()  # a broken connection goes back to the pool (which discards it); next batch reconnects
            self.conn = None
            raise


_COMMITTERS: weakref.WeakKeyDictionary[Engine, _GroupCommitter] = weakref.WeakKeyDictionary()
_COMMITTERS_LOCK = threading.Lock()


def _submit(engine: Engine, entries: list[Any]) -> Future[None]:
    # Under the same lock a committer retires with, so nothing is ever queued to a retired one.
    with _COMMITTERS_LOCK:
        c = _COMMITTERS.get(engine)
        if c is None:
            c = _COMMITTERS[engine] = _GroupCommitter(engine)
        return c.submit(entries)


def _rollback(session: Session) -> None:
    try:
        session.rollback()
    finally:
        for undo in reversed(session.info.pop("on_rollback", [])):
            undo()


def _record_refusal(engine: Engine, exc: DomainError) -> None:
    entry = getattr(exc, "audit_entry", None)
    if not entry:
        return
    import audit  # local: keeps the import graph obvious — db is plumbing, audit is the log

    with Session(engine, expire_on_commit=False) as session:
        audit.record(session, **entry)
        session.commit()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply Alembic migrations up to `revision` on `engine`."""
    from alembic import command

    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Replicas and init containers may migrate at once: one at a time, the rest find it done.
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7364001)")
        cfg = alembic_config(conn)
        command.upgrade(cfg, revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(None)).get_current_head()


def alembic_config(connection: Any) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg
