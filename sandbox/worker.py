"""The caged side of the query runner: runs in its own process, one fresh in-memory DuckDB per job.

Decoded tables may stay warm between jobs (sandbox.table_cache), keyed by grant and dataset version; a
job's connection is still fresh and sees only the columns that job asked for.
"""

from __future__ import annotations

import contextlib
import resource
import signal
import threading
import time
from typing import Any

from common.heap import freeze_startup_heap
from sandbox.table_cache import TableCache

# Replies to the parent: (kind, payload, cache listing). "miss" asks the parent to send a table's data.
_MISS = "miss"

# Settings applied to every connection before the query runs, then frozen by lock_configuration.
# python_enable_replacements=false stops DuckDB from resolving unknown table names to Python objects
# in this process; external access off refuses files, URLs, ATTACH, INSTALL and LOAD.
_LOCKDOWN = (
    "SET python_enable_replacements = false",
    "SET autoinstall_known_extensions = false",
    "SET autoload_known_extensions = false",
    "SET allow_community_extensions = false",
    "SET enable_external_access = false",
    "SET lock_configuration = true",
)


def _limit_process(address_space_mb: int) -> None:
    """Kernel limits for the whole worker: address space, no files written, no core dumps."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent's Ctrl-C is the parent's business
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past RLIMIT_FSIZE fails with EFBIG instead
    limits = [(resource.RLIMIT_FSIZE, 0), (resource.RLIMIT_CORE, 0)]
    if address_space_mb > 0:
        limits.append((resource.RLIMIT_AS, address_space_mb * 1024 * 1024))
    for what, value in limits:
        with contextlib.suppress(ValueError, OSError):  # a platform without this limit
            resource.setrlimit(what, (value, value))


def _cpu_budget(seconds: float) -> None:
    """Let this job use `seconds` more CPU; the kernel sends SIGXCPU (fatal) past it, a last-resort stop."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    spent = used.ru_utime + used.ru_stime
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = int(spent + seconds) + 1
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _load(source: dict[str, Any], columns: list[str] | None) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sandbox.parquet_ranges import assemble

    # Decrypted bytes are read from memory; they never touch a file in this process. Ranges hold only
    # the footer and the job's columns (the rest of the file image is zeros, never read for them).
    # ParquetFile.read, not read_table: the latter imports pyarrow.dataset (seconds) and globs paths.
    if source.get("segments") is not None:
        src: Any = pa.BufferReader(pa.py_buffer(assemble(int(source["size"]), source["segments"])))
    elif source.get("data") is not None:
        src = pa.BufferReader(source["data"])
    else:
        src = source["path"]
    with pq.ParquetFile(src) as f:
        meta = f.metadata
    with pq.ParquetFile(src, metadata=meta, read_dictionary=_dictionary_columns(meta, columns)) as f:
        return f.read(columns=columns)


def _dictionary_columns(meta: Any, columns: list[str] | None) -> list[str]:
    """Text columns stored dictionary-encoded throughout (codes, categories): read as Arrow dictionaries,
    which skips expanding every value (~20 ms per 1M rows and column) and holds less in the cache; DuckDB
    sees them as VARCHAR all the same. Fewer than 4 stored bytes a value means the data pages hold only
    dictionary indices (a plain string takes at least its 4-byte length)."""
    if meta.num_row_groups == 0:
        return []
    out = []
    first = meta.row_group(0)
    for c in range(first.num_columns):
        name = first.column(c).path_in_schema
        if columns is not None and name not in columns:
            continue
        chunks = [meta.row_group(rg).column(c) for rg in range(meta.num_row_groups)]
        if all(
            ch.physical_type == "BYTE_ARRAY"
            and ch.has_dictionary_page
            and ch.num_values > 0
            and ch.total_uncompressed_size < 4 * ch.num_values
            for ch in chunks
        ):
            out.append(name)
    return out


def _table(source: dict[str, Any], cache: TableCache | None) -> Any | None:
    """The job's table: from the cache when its key holds the columns, else decoded from the data sent
    (and kept when the parent says so); None when the parent sent only a key the cache cannot serve."""
    key, columns = source.get("key"), source.get("columns")
    if cache is not None and key is not None and columns is not None:
        key = tuple(key)
        hit = cache.get(key, columns)
        if hit is not None:
            return hit
    if source.get("data") is None and source.get("path") is None and source.get("segments") is None:
        return None
    table = _load(source, columns)
    if cache is not None and key is not None and columns is not None and source.get("store"):
        cache.put(key, table)
    return table


def _tables(job: dict[str, Any], cache: TableCache | None) -> tuple[dict[str, Any], str | None]:
    """The job's tables by name (see _table), and the first one the cache could not serve, if any."""
    tables: dict[str, Any] = {}
    for name, source in job["tables"].items():
        table = _table(source, cache)
        if table is None:
            return tables, name
        tables[name] = table
    return tables, None


def _open(threads: int, memory_mb: int) -> Any:
    """A new, empty in-memory DuckDB database with the job's limits, locked down before any table is added."""
    import duckdb

    con = duckdb.connect(":memory:")
    try:
        con.execute(f"SET threads = {int(threads)}")
        con.execute(f"SET memory_limit = '{int(memory_mb)}MB'")
        con.execute("SET max_temp_directory_size = '0B'")  # no spilling to disk
        for stmt in _LOCKDOWN:
            con.execute(stmt)
    except BaseException:
        con.close()
        raise
    return con


class Databases:
    """One fresh DuckDB database per job. Opening one (tens of ms) is done while the worker waits for its
    next job, with the last job's limits; a used database is closed after its reply has been sent."""

    def __init__(self) -> None:
        self._spare: tuple[tuple[int, int], Any] | None = None
        self._used: list[Any] = []

    def take(self, threads: int, memory_mb: int) -> Any:
        spare, self._spare = self._spare, None
        if spare is not None and spare[0] == (threads, memory_mb):
            con = spare[1]
        else:
            if spare is not None:
                spare[1].close()
            con = _open(threads, memory_mb)
        self._used.append(con)
        return con

    def close_used(self) -> None:
        while self._used:
            self._used.pop().close()

    def tidy(self, threads: int, memory_mb: int) -> None:
        """Close the used databases and open the next one (between jobs)."""
        self.close_used()
        if self._spare is None:
            self._spare = ((threads, memory_mb), _open(threads, memory_mb))


def run_job(job: dict[str, Any], cache: TableCache | None = None, dbs: Databases | None = None) -> tuple[str, Any]:
    """Run one job; return ("ok", payload), ("miss", table name) or (error kind, safe message)."""
    import duckdb
    import pyarrow as pa

    limits = job["limits"]
    started = time.perf_counter()
    if job["sql"] is None:  # a preload: decode the tables into the cache; no database, nothing run
        try:
            tables, missing = _tables(job, cache)
            if missing is not None:
                return _MISS, missing
            rows = sum(t.num_rows for t in tables.values())
            return "ok", {"rows_loaded": rows, "load_ms": (time.perf_counter() - started) * 1000}
        except (OSError, ValueError, KeyError) as e:
            return "source", f"a table source could not be read ({type(e).__name__})"
    own = dbs is None
    dbs = dbs or Databases()
    timer: threading.Timer | None = None
    try:
        con = dbs.take(int(limits["threads"]), int(limits["memory_mb"]))
        tables, missing = _tables(job, cache)
        if missing is not None:
            return _MISS, missing
        for name, table in tables.items():
            con.register(name, table)  # an Arrow table, read in place (no copy)
        scanned = sum(t.num_rows for t in tables.values())
        loaded_ms = (time.perf_counter() - started) * 1000
        timer = threading.Timer(limits["timeout_s"], con.interrupt)
        timer.daemon = True
        timer.start()
        _cpu_budget(limits["timeout_s"] * max(1, int(limits["threads"])) + 5)
        max_rows = int(limits["max_rows"])
        reader = con.sql(job["sql"]).to_arrow_reader(min(max_rows + 1, 100_000))
        batches, count = [], 0
        for batch in reader:
            batches.append(batch)
            count += batch.num_rows
            if count > max_rows:
                break
        table = pa.Table.from_batches(batches, schema=reader.schema).slice(0, max_rows)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return "ok", {
            "ipc": sink.getvalue().to_pybytes(),
            "rows_scanned": scanned,
            "truncated": count > max_rows,
            "load_ms": loaded_ms,
            "run_ms": (time.perf_counter() - started) * 1000 - loaded_ms,
        }
    except duckdb.InterruptException:
        return "timeout", f"the query ran past its {limits['timeout_s']} s limit and was interrupted"
    except (duckdb.OutOfMemoryException, MemoryError):
        return "memory", f"the query needed more than its {limits['memory_mb']} MB memory limit"
    except (duckdb.BinderException, duckdb.CatalogException, duckdb.ParserException) as e:
        # These name tables and columns only, never row values.
        return "query", f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    except duckdb.PermissionException:
        return "query", "the query tried to reach files, the network or settings, which the sandbox forbids"
    except duckdb.Error as e:
        # Other DuckDB messages may quote a row value (e.g. a failed cast), so only the class is told.
        return "query", f"the query failed in DuckDB ({type(e).__name__}); check casts and arithmetic"
    except (OSError, ValueError, KeyError) as e:
        return "source", f"a table source could not be read ({type(e).__name__})"
    finally:
        if timer is not None:
            timer.cancel()
        if own:
            dbs.close_used()


def serve(conn: Any, address_space_mb: int, cache_mb: int = 0) -> None:
    """Worker main loop: take jobs (or ("drop", grant ids)) from the pipe until it closes or says stop."""
    _limit_process(address_space_mb)
    cache = TableCache(cache_mb * 1024 * 1024)
    dbs = Databases()
    import duckdb  # noqa: F401  (import once, so the first job is not slower than the rest)
    import pyarrow.parquet  # noqa: F401

    freeze_startup_heap()  # no full collection during a query walks these imports again (~16 ms each)
    conn.send(("ready", None))  # the parent starts a query's clock only after this
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        if isinstance(job, tuple) and job[0] == "drop":
            cache.drop_grants(set(job[1]))
            conn.send(("dropped", None, cache.listing()))
            continue
        try:
            reply = run_job(job, cache, dbs)
        except MemoryError:
            cache.drop_grants({k[0] for k, _ in cache.listing()})  # give the memory back before anything else
            reply = ("memory", "the query needed more memory than the worker may use")
        except Exception as e:  # a bug or an odd input must not end the worker loop
            reply = ("query", f"the sandbox could not run the query ({type(e).__name__})")
        conn.send((*reply, cache.listing()))
        try:
            dbs.tidy(int(job["limits"]["threads"]), int(job["limits"]["memory_mb"]))
        except Exception:
            dbs.close_used()
