"""Query runner: runs guarded SQL in a separate, resource-limited worker process and returns Arrow results.

Workers keep decoded tables warm between queries (`Cached` sources, sandbox.table_cache). The runner
mirrors what each worker holds, sends a query to the idle worker that holds most of its tables, and
loads (decrypts) a table only when that worker lacks it. A grant that is forgotten (revoked, expired)
is dropped from every worker and never cached again by this runner.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from common.errors import DomainError, Invalid, Timeout, TooLarge
from sandbox import worker
from sandbox.parquet_ranges import ParquetRanges


class WorkerCrashed(DomainError):
    """The worker process died mid-query (killed, crashed, out of memory); it has been replaced."""

    status = 503
    type_slug = "sandbox-worker-failed"
    title = "Sandbox worker failed"


class SandboxBusy(DomainError):
    """Every worker stayed busy for the whole admission wait: the caller should retry shortly."""

    status = 503
    type_slug = "sandbox-busy"
    title = "Sandbox busy"

    def __init__(self, detail: str, *, retry_after: int = 5) -> None:
        super().__init__(detail, extra={"retry_after": retry_after})


# How long a query may wait for a free worker before it is turned away (it then holds no server thread).
# 20 s: an analyst would rather wait than retry, and 20 s of queue plus the 10 s run limit stays inside
# the 60 s an ingress usually allows; at 200 clients on two cores, queries on PostgreSQL queued ~15 s.
ADMISSION_WAIT_S = 20.0


@dataclass(frozen=True)
class ParquetFile:
    """A plaintext Parquet file on disk, read by the worker."""

    path: str


@dataclass(frozen=True)
class ParquetBytes:
    """An already-decrypted Parquet file held in memory; sent to the worker over a pipe, never written."""

    data: bytes = field(repr=False)


TableSource = ParquetFile | ParquetBytes | ParquetRanges


@dataclass(frozen=True)
class CacheKey:
    """What a warm table is kept under: one grant's view of one published version of one dataset."""

    grant_id: int
    dataset: str
    version: int
    digest: str  # the version's content digest: a republished version never matches an old entry

    def astuple(self) -> tuple[int, str, int, str]:
        return (self.grant_id, self.dataset, self.version, self.digest)


@dataclass(frozen=True)
class Cached:
    """A table the worker may keep decoded; `load` (e.g. decrypt into memory) is called only on a miss,
    with the columns the job needs (None: all), so a loader may read and decrypt just those."""

    key: CacheKey
    load: Callable[[list[str] | None], TableSource] = field(repr=False, compare=False)


Source = TableSource | Cached


@dataclass(frozen=True)
class Limits:
    """Per-query limits: wall clock, DuckDB memory and threads, row cap, worker address space."""

    timeout_s: float = 10.0
    memory_mb: int = 1024
    threads: int = 2
    max_rows: int = 10_000
    address_space_mb: int = 8192  # RLIMIT_AS for the worker; generous because DuckDB reserves virtual memory
    kill_grace_s: float = 2.0  # after the timeout, how long the interrupt may take before the kill


@dataclass(frozen=True)
class QueryResult:
    """What a query returned, capped at `Limits.max_rows` (`truncated` says whether rows were cut)."""

    table: pa.Table = field(repr=False)
    rows_scanned: int  # rows loaded into the cage from the tables the query was given
    rows_returned: int
    truncated: bool
    elapsed_ms: float
    run_ms: float = 0.0  # DuckDB execution time inside the worker

    @property
    def columns(self) -> list[str]:
        return list(self.table.column_names)

    @property
    def rows(self) -> list[dict[str, Any]]:
        return self.table.to_pylist()


# A busy host can take many seconds to start a Python process that imports DuckDB and Arrow.
START_TIMEOUT_S = 60.0


_SPAWN_LOCK = threading.Lock()


@contextlib.contextmanager
def _main_not_rerun() -> Iterator[None]:
    """Start a spawned process without it re-running the parent's `__main__` file.

    Spawn imports the parent's main module again in the child (as `__mp_main__`, by its module spec or
    else its file). The worker needs nothing from it, and under `pdg serve` (or `python -m gateway.cli`)
    it is the CLI, whose imports (pandas, Great Expectations, ...) cost ~5 s of CPU per worker: on a loaded
    two-core host, 40 s before the first sandbox query of a gateway process could run.
    """
    main = sys.modules["__main__"]
    with _SPAWN_LOCK:
        spec, path = main.__dict__.get("__spec__"), main.__dict__.pop("__file__", None)
        main.__spec__ = None
        try:
            yield
        finally:
            main.__spec__ = spec
            if path is not None:
                main.__file__ = path


class _Worker:
    """One spawned worker process and the parent's end of its pipe."""

    def __init__(self, address_space_mb: int, cache_mb: int = 0) -> None:
        ctx = multiprocessing.get_context("spawn")  # no fork: the worker inherits no parent state
        self.conn, child = ctx.Pipe(duplex=True)
        self.address_space_mb = address_space_mb
        # The worker's own report of its warm tables (key -> columns), refreshed with every reply.
        self.cached: dict[tuple[int, str, int, str], frozenset[str]] = {}
        self.pending_drop: set[int] = set()  # grants to drop before this (busy) worker is reused
        self.process = ctx.Process(target=worker.serve, args=(child, address_space_mb, cache_mb), daemon=True)
        with _main_not_rerun():
            self.process.start()
        child.close()

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        """Block until the worker has imported its engines: process start never counts against a query."""
        try:
            if self.conn.poll(timeout) and self.conn.recv()[0] == "ready":
                return
        except (EOFError, OSError):
            pass
        self.kill()
        raise WorkerCrashed("a sandbox worker could not be started; try again, and tell the operator if it persists")

    @property
    def alive(self) -> bool:
        return self.process.is_alive()

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.conn.close()

    def holds(self, key: tuple[int, str, int, str], columns: set[str]) -> bool:
        return columns <= self.cached.get(key, frozenset())

    def note(self, listing: list[Any] | None) -> None:
        if listing is not None:
            self.cached = {tuple(k): frozenset(cols) for k, cols in listing}

    def drop(self, grant_ids: set[int], timeout: float = 5.0) -> bool:
        """Ask the (idle) worker to drop these grants' tables; False if it did not answer."""
        try:
            self.conn.send(("drop", sorted(grant_ids)))
            if not self.conn.poll(timeout):
                return False
            self.note(self.conn.recv()[2])
        except (EOFError, OSError):
            return False
        self.pending_drop -= grant_ids
        return True

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.process.join(2)
        self.kill()


class SandboxRunner:
    """A small pool of warm workers; each query runs in one, a worker that misbehaves is replaced."""

    def __init__(self, limits: Limits | None = None, *, pool_size: int = 1, cache_mb: int = 512) -> None:
        self.limits = limits or Limits()
        self._idle: list[_Worker] = []  # guarded by _lock
        self.pool_size = pool_size
        self.cache_mb = cache_mb  # per worker; 0 keeps nothing warm
        self._forgotten: set[int] = set()  # grants never cached again (revoked, expired)
        self._slots = threading.BoundedSemaphore(pool_size)
        self._lock = threading.Lock()
        self._all: set[_Worker] = set()
        self._closed = False
        self._preloads: list[threading.Thread] = []
        self._preloading: set[tuple[int, str, int, str]] = set()  # keys a background preload is loading

    def __enter__(self) -> SandboxRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def warm_up(self, workers: int = 1) -> None:
        """Have `workers` workers (at most the pool) started now, so no query pays for a process start.

        They start side by side: one at a time, a gateway whose pool is two made its second concurrent
        query wait for a whole process start (seconds on a busy host)."""
        n = min(workers, self.pool_size)
        for _ in range(n):
            self._slots.acquire()
        try:
            with self._lock:
                missing = max(0, n - len(self._idle))
            fresh = [_Worker(self.limits.address_space_mb, self.cache_mb) for _ in range(missing)]
            with self._lock:
                self._all.update(fresh)
            for w in fresh:
                w.wait_ready()
                self._give_back(w)
        finally:
            for _ in range(n):
                self._slots.release()

    def worker_pids(self) -> list[int]:
        """Process ids of live workers (for operators and tests)."""
        with self._lock:
            return [w.process.pid for w in self._all if w.alive and w.process.pid]

    def cached_grants(self) -> set[int]:
        """Grants whose tables some worker keeps warm (as the workers last reported)."""
        with self._lock:
            return {k[0] for w in self._all for k in w.cached}

    def cached_keys(self) -> set[tuple[int, str, int, str]]:
        with self._lock:
            return {k for w in self._all for k in w.cached}

    def forget_grants(self, grant_ids: set[int]) -> None:
        """Drop these grants' warm tables from every worker now (a busy one: before its next use) and never
        cache them again. Serving is refused by the decision point anyway; this frees the memory."""
        if not grant_ids:
            return
        with self._lock:
            self._forgotten |= set(grant_ids)
            for w in list(self._all):
                if grant_ids & {k[0] for k in w.cached}:
                    w.pending_drop |= grant_ids
            idle = [w for w in self._idle if w.pending_drop]
            for w in idle:
                if not w.drop(set(w.pending_drop)):
                    self._idle.remove(w)
                    self._all.discard(w)
                    w.kill()

    def preload(self, tables: dict[str, Cached], columns: dict[str, set[str]]) -> bool:
        """Load these tables into an idle worker's warm cache now (when a workspace is opened), so the
        grant's first query is served warm. Never waits for a worker and never runs the caller's SQL: if
        every worker is busy, or the grant is forgotten, or nothing is kept warm, it does nothing (False)."""
        if self._closed or self.cache_mb <= 0 or not tables:
            return False
        with self._lock:
            if {src.key.grant_id for src in tables.values()} & self._forgotten:
                return False
        if not self._slots.acquire(blocking=False):
            return False
        try:
            wanted = {src.key.astuple(): set(columns[name]) for name, src in tables.items()}
            w = self._take(wanted)
            if all(w.holds(k, c) for k, c in wanted.items()):
                self._give_back(w)
                return True
            lim = self.limits
            reply = self._call(w, self._job(w, None, dict(tables), columns, lim), lim)  # no SQL: load only
            if reply[0] in ("killed", "crashed") or not w.alive:
                self._discard(w)
                return False
            self._settle(w, reply[2])
            self._give_back(w)
            return reply[0] == "ok"
        finally:
            self._slots.release()

    def preload_in_background(self, tables: dict[str, Cached], columns: dict[str, set[str]]) -> bool:
        """preload() on a thread of its own: the caller (a page or API request) does not wait for it. A
        workspace opened again while its preload runs starts no second one (False)."""
        keys = frozenset(src.key.astuple() for src in tables.values())
        with self._lock:
            if keys & self._preloading:
                return False
            self._preloading |= keys
            t = threading.Thread(
                target=self._preload_quietly, args=(tables, columns, keys), daemon=True, name="preload"
            )
            self._preloads = [p for p in self._preloads if p.is_alive()] + [t]
        t.start()
        return True

    def wait_preloads(self, timeout: float = 60.0) -> None:
        """Wait for background preloads to finish (tests, benchmarks, shutdown)."""
        with self._lock:
            pending = list(self._preloads)
        for t in pending:
            t.join(timeout)

    def _preload_quietly(self, tables: dict[str, Cached], columns: dict[str, set[str]], keys: frozenset) -> None:
        try:
            with contextlib.suppress(Exception):  # a failed preload only means the first query loads instead
                self.preload(tables, columns)
        finally:
            with self._lock:
                self._preloading -= keys

    def run(
        self,
        sql: str,
        tables: dict[str, Source],
        *,
        columns: dict[str, set[str]] | None = None,
        limits: Limits | None = None,
    ) -> QueryResult:
        """Run guarded `sql` over `tables`, loading only `columns` of each; raises Timeout, Invalid, ..."""
        if self._closed:
            raise RuntimeError("runner is closed")
        lim = limits or self.limits
        wanted = {
            src.key.astuple(): set(columns[name])
            for name, src in tables.items()
            if isinstance(src, Cached) and columns is not None and name in columns
        }
        started = time.perf_counter()
        if not self._slots.acquire(timeout=ADMISSION_WAIT_S):
            raise SandboxBusy(
                f"all {self.pool_size} sandbox workers stayed busy for {ADMISSION_WAIT_S:.0f} s; retry shortly"
            )
        try:
            w = self._take(wanted)
            healthy = True
            try:
                failed, sent = self._send_ahead(w, tables, columns, lim)
                # a worker with a reply still pending (or gone) never goes back to the pool
                healthy = failed is None and not sent
                reply = failed or self._finish_ahead(w, sent, self._job(w, sql, tables, columns, lim, sent=sent), lim)
                healthy = False
                if reply[0] == "miss":  # the mirror was out of date: send every table's data once
                    reply = self._call(w, self._job(w, sql, tables, columns, lim, load_all=True), lim)
                healthy = reply[0] not in ("killed", "crashed")
                if healthy:
                    self._settle(w, reply[2])
            finally:
                if healthy and w.alive:
                    self._give_back(w)
                else:
                    self._discard(w)
        finally:
            self._slots.release()
        kind, payload = reply[0], reply[1]
        if kind != "ok":
            raise _error(kind, payload, lim)
        table = pa.ipc.open_stream(payload["ipc"]).read_all()
        return QueryResult(
            table=table,
            rows_scanned=payload["rows_scanned"],
            rows_returned=table.num_rows,
            truncated=payload["truncated"],
            elapsed_ms=(time.perf_counter() - started) * 1000,
            run_ms=payload["run_ms"],
        )

    def close(self) -> None:
        """Stop every worker."""
        self._closed = True
        with self._lock:
            workers, self._all = list(self._all), set()
        for w in workers:
            w.stop()

    def _take(self, wanted: dict[tuple[int, str, int, str], set[str]]) -> _Worker:
        """The idle worker holding most of the wanted tables warm, else a fresh one."""
        while True:
            with self._lock:
                best = max(self._idle, key=lambda w: sum(w.holds(k, c) for k, c in wanted.items()), default=None)
                if best is not None:
                    self._idle.remove(best)
            if best is None:
                w = _Worker(self.limits.address_space_mb, self.cache_mb)
                with self._lock:
                    self._all.add(w)
                w.wait_ready()
                return w
            if best.alive:
                return best
            self._discard(best)

    def _give_back(self, w: _Worker) -> None:
        with self._lock:
            self._idle.append(w)

    def _settle(self, w: _Worker, listing: list[Any] | None) -> None:
        """Take the worker's report; drop what was forgotten while it ran (it may have just cached it)."""
        w.note(listing)
        with self._lock:
            stale = (self._forgotten & {k[0] for k in w.cached}) | w.pending_drop
        if stale and not w.drop(stale):
            w.kill()

    def _send_ahead(
        self, w: _Worker, tables: dict[str, Source], columns: dict[str, set[str]] | None, lim: Limits
    ) -> tuple[tuple[Any, ...] | None, list[str]]:
        """Of two or more tables to decrypt (cold), send each but the last to the worker to decode as soon
        as it is decrypted, so the worker decodes one while the gateway decrypts the next (two cores, two
        steps in parallel). Returns a failed send's reply (else None) and the names sent."""
        with self._lock:
            forgotten = set(self._forgotten)
        cold = [
            name
            for name, src in tables.items()
            if isinstance(src, Cached)
            and columns is not None
            and name in columns
            and self.cache_mb > 0
            and src.key.grant_id not in forgotten
            and not w.holds(src.key.astuple(), set(columns[name]))
        ]
        sent: list[str] = []
        for name in cold[:-1]:
            try:
                w.conn.send(self._job(w, None, {name: tables[name]}, columns, lim))  # load only, no SQL
            except (EOFError, OSError, BrokenPipeError):
                w.process.join(1)
                return ("crashed", w.process.exitcode), sent
            sent.append(name)
        return None, sent

    def _finish_ahead(self, w: _Worker, sent: list[str], job: dict[str, Any], lim: Limits) -> tuple[Any, ...]:
        """Take the replies to the tables sent ahead (decoded meanwhile), then run the job."""
        for _ in sent:
            ahead = self._recv(w, lim.timeout_s + lim.kill_grace_s + _load_allowance(job))
            if ahead[0] in ("killed", "crashed"):
                return ahead
            self._settle(w, ahead[2])
        return self._call(w, job, lim)

    def _job(
        self,
        w: _Worker,
        sql: str | None,
        tables: dict[str, Source],
        columns: dict[str, set[str]] | None,
        lim: Limits,
        *,
        load_all: bool = False,
        sent: Iterable[str] = (),
    ) -> dict[str, Any]:
        with self._lock:
            forgotten = set(self._forgotten)
        out: dict[str, Any] = {}
        for name, src in tables.items():
            cols = sorted(columns[name]) if columns is not None and name in columns else None
            if not isinstance(src, Cached):
                out[name] = _source(name, src, cols)
                continue
            if src.key.grant_id in forgotten or cols is None or self.cache_mb <= 0:
                out[name] = _source(name, src.load(cols), cols)  # used once, never kept
            elif name in sent or (not load_all and w.holds(src.key.astuple(), set(cols))):
                out[name] = {"key": src.key.astuple(), "columns": cols}
            else:
                out[name] = {**_source(name, src.load(cols), cols), "key": src.key.astuple(), "store": True}
        return {
            "sql": sql,
            "tables": out,
            "limits": {
                "timeout_s": lim.timeout_s,
                "memory_mb": lim.memory_mb,
                "threads": lim.threads,
                "max_rows": lim.max_rows,
            },
        }

    def _discard(self, w: _Worker) -> None:
        with self._lock:
            self._all.discard(w)
        w.kill()

    def _call(self, w: _Worker, job: dict[str, Any], lim: Limits) -> tuple[Any, ...]:
        """The worker's reply (kind, payload, cache listing); (kind, detail) when it was killed or crashed."""
        try:
            w.conn.send(job)
        except (EOFError, OSError, BrokenPipeError):
            w.process.join(1)
            return "crashed", w.process.exitcode
        # The worker interrupts itself at timeout_s; the grace covers loading and the interrupt itself.
        return self._recv(w, lim.timeout_s + lim.kill_grace_s + _load_allowance(job))

    def _recv(self, w: _Worker, wait_s: float) -> tuple[Any, ...]:
        try:
            if not w.conn.poll(wait_s):
                w.kill()
                return "killed", None
            return w.conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            w.process.join(1)
            return "crashed", w.process.exitcode


def _load_allowance(job: dict[str, Any]) -> float:
    """Extra seconds to load the tables before the query's own clock starts (about 1 s per 100 MB)."""
    size = sum(
        len(s["data"])
        if s.get("data") is not None
        else s["size"]
        if s.get("segments") is not None
        else _file_size(s["path"])
        if s.get("path")
        else 0
        for s in job["tables"].values()
    )
    return 1.0 + size / 100e6


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _source(name: str, src: TableSource, cols: list[str] | None) -> dict[str, Any]:
    if isinstance(src, ParquetBytes):
        return {"data": src.data, "columns": cols}
    if isinstance(src, ParquetRanges):
        return {"size": src.size, "segments": list(src.segments), "columns": cols}
    if isinstance(src, ParquetFile):
        return {"path": os.fspath(src.path), "columns": cols}
    raise Invalid(f"table '{name}': a source must be ParquetFile, ParquetBytes, ParquetRanges or Cached")


def _error(kind: str, payload: Any, lim: Limits) -> DomainError:
    if kind in ("timeout", "killed"):
        return Timeout(
            f"the query ran past its {lim.timeout_s:g} s time limit and was stopped; "
            "filter earlier, aggregate before joining, or avoid cross joins",
            extra={"limit_s": lim.timeout_s},
        )
    if kind == "memory":
        return TooLarge(f"{payload}; filter or aggregate earlier so less data is held at once")
    if kind == "crashed":
        return WorkerCrashed(
            f"the query's worker process died (exit code {payload}); it has been replaced. "
            "If this repeats with the same query, simplify it",
        )
    if kind == "source":
        return Invalid(payload)
    return Invalid(f"query failed: {payload}")
