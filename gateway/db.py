"""Database engine, sessions and the unit of work shared by HTTP handlers, the CLI and jobs.

SQLite (embedded default) runs in WAL mode with synchronous=FULL and takes the write lock at BEGIN
(`BEGIN IMMEDIATE`), so audit appends are serialised and a transaction never fails half-way on lock
upgrade. PostgreSQL serialises audit appends with an advisory lock inside the audit layer.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
import weakref
from collections.abc import Iterator
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
    """Write entries through the engine's group committer; returns once they are durable.

    Validation and the hashing that needs no place in the log happen here, in the caller's thread (a bad
    entry fails its own request at once); the commit only numbers, chains and inserts.
    """
    if entries:
        from audit.log import prepare

        _committer(engine).commit([prepare(**e) for e in entries])


WAIT_S = 120.0  # a caller whose entries were not taken into a commit by then fails (nothing was written)
IDLE_EXIT_S = 30.0  # a committer idle this long gives its connection back and retires


class _Waiter:
    __slots__ = ("done", "entries", "error", "lead")

    def __init__(self, entries: list[Any]) -> None:
        self.entries = entries
        self.done = threading.Event()  # set when the entries are committed or failed, or this caller leads
        self.error: BaseException | None = None
        self.lead = False


class _GroupCommitter:
    """Appends audit entries, many requests' worth per transaction, committed by the requests themselves.

    Leader and followers (as in MySQL's group commit): a caller that finds no commit in progress commits
    everything queued, its own entries first, in its own thread; callers arriving meanwhile queue, and when
    the commit ends the oldest of them leads the next one with all that queued up. Alone, a request thus
    pays one commit and no thread hand-off (on PostgreSQL one round trip: `append_after_commit`); under
    load one fsync covers a whole batch. Each caller returns only once its entries are durable (nothing is
    answered unlogged). A batch that fails is retried entry by entry so one bad entry fails only its caller.
    """

    MAX_BATCH = 512

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.conn: Connection | None = None  # kept across batches: no pool checkout (and ping) per batch
        self._lock = threading.Lock()
        self._queue: list[_Waiter] = []  # the leader is always _queue[0] until it takes its batch
        self._leading = False
        self._retired = False
        self._last = time.monotonic()
        self._turn = _WriterTurn.of(engine)
        self._head: tuple[int, bytes] | None = None  # PostgreSQL: (seq, chain hash) of our last commit

    def commit(self, entries: list[Any]) -> None:
        me = _Waiter(entries)
        with self._lock:
            retired = self._retired
            if not retired:
                self._queue.append(me)
                me.lead = not self._leading
                self._leading = True
        if retired:  # retired between lookup and now: the engine's current committer takes them
            return _committer(self.engine).commit(entries)
        while not me.lead and not me.done.wait(WAIT_S):
            with self._lock:
                if not me.lead and me in self._queue:
                    self._queue.remove(me)
                    raise TimeoutError(f"the audit log took no entries for {WAIT_S:.0f} s; nothing was written")
        if me.lead:
            self._lead()
        if me.error is not None:
            raise me.error

    def _lead(self) -> None:
        with self._lock:
            batch = self._queue[: self.MAX_BATCH]
            del self._queue[: self.MAX_BATCH]
        written = False
        try:
            self._write_batch(batch)
            written = True
        finally:
            if not written:  # interrupted (not an Exception): no caller may think its entries are in
                for w in batch:
                    w.error = w.error or RuntimeError("the audit commit was interrupted; nothing was written")
            with self._lock:  # hand over to the oldest waiting caller, or stop leading
                nxt = self._queue[0] if self._queue else None
                self._last = time.monotonic()
                if nxt is None:
                    self._leading = False
                else:
                    nxt.lead = True
            for w in batch[1:]:
                w.done.set()
            if nxt is not None:
                nxt.done.set()

    def _write_batch(self, batch: list[_Waiter]) -> None:
        try:
            self._write([e for w in batch for e in w.entries])
        except Exception:  # isolate the failing submission
            for w in batch:
                try:
                    self._write(w.entries)
                except Exception as exc:
                    w.error = exc

    def _write(self, entries: list[Any]) -> None:
        from audit.log import StaleHead, append, append_after_commit

        if self.conn is None or self.conn.closed or self.conn.invalidated:
            self.conn = self.engine.connect()
        try:
            if self._head is not None:  # PostgreSQL after a commit of ours: one round trip, not three
                try:
                    self._wrote(append_after_commit(self.conn.connection.driver_connection, entries, *self._head))
                    return
                except StaleHead:  # another writer appended since: read the head under the lock
                    self._head = None
            with self._turn, Session(bind=self.conn, expire_on_commit=False) as session:
                rows = append(session, entries)  # one head read, one multi-row INSERT, one commit (fsync)
                session.commit()
            if self.engine.dialect.name == "postgresql":
                self._wrote(rows)
        except Exception:
            self._close()  # a broken connection goes back to the pool (which discards it); next batch reconnects
            raise

    def _wrote(self, rows: list[dict[str, Any]]) -> None:
        self._head = (rows[-1]["seq"], bytes.fromhex(rows[-1]["chain_hash"]))

    def _close(self) -> None:
        self._head = None
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def retire_if_idle(self, now: float) -> bool:
        """Give the connection back and stop taking entries if nothing was committed for IDLE_EXIT_S."""
        with self._lock:
            if self._leading or self._queue or now - self._last < IDLE_EXIT_S:
                return False
            self._retired = True
            self._close()
            self._turn.close()
            return True


class _WriterTurn:
    """Queues the audit commits of several processes on one SQLite file in the kernel (flock).

    Without it they meet at BEGIN IMMEDIATE, where SQLite's busy handler polls with sleeps of 1, 2, 5,
    10... ms: two serving workers committing at once then wait for a sleep, not for the other's commit,
    which set the p99 of every audited request. flock wakes the next writer as soon as the lock is
    released. BEGIN IMMEDIATE still guards the log; this only decides who goes next.
    """

    def __init__(self, path: Path | None) -> None:
        self.path, self.fd = path, -1

    @classmethod
    def of(cls, engine: Engine) -> _WriterTurn:
        db = engine.url.database if is_sqlite(engine) else None
        return cls(Path(f"{db}-audit.lock") if db and db != ":memory:" else None)

    def __enter__(self) -> None:
        if self.path is not None:
            if self.fd < 0:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *_: Any) -> None:
        if self.fd >= 0:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


_COMMITTERS: weakref.WeakKeyDictionary[Engine, _GroupCommitter] = weakref.WeakKeyDictionary()
_COMMITTERS_LOCK = threading.Lock()
_reaper: threading.Thread | None = None


def _committer(engine: Engine) -> _GroupCommitter:
    global _reaper
    with _COMMITTERS_LOCK:
        c = _COMMITTERS.get(engine)
        if c is None:
            c = _COMMITTERS[engine] = _GroupCommitter(engine)
        if _reaper is None or not _reaper.is_alive():
            _reaper = threading.Thread(target=_reap, name="pdg-audit-reaper", daemon=True)
            _reaper.start()
        return c


def _reap() -> None:
    """Retire idle committers, so an engine no longer used can be collected and holds no connection."""
    while True:
        time.sleep(IDLE_EXIT_S / 3)
        now = time.monotonic()
        with _COMMITTERS_LOCK:
            for engine, c in list(_COMMITTERS.items()):
                if c.retire_if_idle(now):
                    del _COMMITTERS[engine]


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
