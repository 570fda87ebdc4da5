"""Audit benchmarks: append rate (SQLite WAL synchronous=FULL, PostgreSQL synchronous_commit=on) — per
commit, and sustained through the gateway's group committer with N concurrent writers —, latency added
per audited request (p50/p99), and export + verification rate of a large export.

Run: flock /work/bench.lock .venv/bin/python bench/bench_audit.py [--records 1000000]
(writes bench/results/audit.md)
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text
from sqlmodel import Session

import audit
from audit.checkpoints import sign_checkpoint
from audit.export import export
from audit.verify import verify_export
from common.actor import Actor
from common.heap import freeze_startup_heap
from gateway.db import _write_pending_audit, make_engine, unit_of_work
from gmcrypto.keys import Keyring
from tests.audit import _db

ACTOR = Actor(principal="ent:bench", role="enterprise", org="ENT-B", request_id="r-123456", client_addr="10.1.2.3")
FIELDS = {
    "action": "dataset:read_open",
    "resource_type": "dataset",
    "resource_id": "pop.residents",
    "allowed": True,
    "reasons": ["open-read"],
    "policy_version": "p-42",
    "outcome": {"rows": 100, "bytes": 20480, "grade": "G1", "sha": "ab" * 16},
}


def engines(tmp: Path) -> dict:
    """The gateway's own engine settings: SQLite WAL + synchronous=FULL + BEGIN IMMEDIATE; PostgreSQL
    with the server default synchronous_commit=on (checked below)."""
    _db.ensure_pg_database()
    pg = make_engine(_db.PG_URL, pool_size=40)
    with pg.connect() as conn:
        assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
    return {
        "sqlite (WAL, synchronous=FULL)": make_engine(f"sqlite:///{tmp / 'bench.db'}"),
        "postgresql (synchronous_commit=on)": pg,
    }


def pct(xs: list[float], p: float) -> float:
    return statistics.quantiles(xs, n=100)[int(p) - 1]


def concurrent(fn, threads: int, seconds: float) -> tuple[float, list[float]]:
    """Run fn() in `threads` closed-loop threads for `seconds`: (calls per second, latencies in ms)."""
    stop, lat, lock = time.perf_counter() + seconds, [], threading.Lock()

    def loop() -> None:
        mine = []
        while (t := time.perf_counter()) < stop:
            fn()
            mine.append((time.perf_counter() - t) * 1000)
        with lock:
            lat.extend(mine)

    t0 = time.perf_counter()
    ts = [threading.Thread(target=loop) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return len(lat) / (time.perf_counter() - t0), lat


def group_commit_rate(engine, threads: int, seconds: float) -> tuple[float, float, float, float]:
    """What the gateway sustains: each thread records one entry through the group committer and waits
    until it is durable (committed), as a read request does before it answers. Returns appends/s, the
    wait p50 / p99 (ms) and this process's CPU time per append (µs; the database server's not included)."""
    entry = {"actor": ACTOR, **FIELDS}
    c = cpu_s()
    rate, lat = concurrent(lambda: _write_pending_audit(engine, [entry]), threads, seconds)
    return rate, pct(lat, 50), pct(lat, 99), (cpu_s() - c) / len(lat) * 1e6


def request_latency(engine, threads: int, seconds: float, audited: bool) -> tuple[float, float, float]:
    """A read request as the gateway runs it (unit_of_work(read=True), one small indexed read), with or
    without its audit entry (which the unit of work commits through the group commit and waits for)."""
    entry = {"actor": ACTOR, **FIELDS}

    def request() -> None:
        with unit_of_work(engine, read=True) as s:
            s.execute(text("SELECT count(*) FROM audit_checkpoint")).scalar()
            if audited:
                s.info.setdefault("pending_audit", []).append(entry)

    rate, lat = concurrent(request, threads, seconds)
    return rate, pct(lat, 50), pct(lat, 99)


def fsync_ms(path: Path, n: int = 50) -> float:
    """Median cost of one write + fsync on the disk under the benchmark (the floor of a durable commit)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    times = []
    try:
        for _ in range(n):
            t = time.perf_counter()
            os.write(fd, b"x" * 4096)
            os.fsync(fd)
            times.append((time.perf_counter() - t) * 1000)
    finally:
        os.close(fd)
    return statistics.median(times)


def cpu_s() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def append_rate(engine, n: int, per_tx: int) -> float:
    t = time.perf_counter()
    for _ in range(n // per_tx):
        with Session(engine) as s:
            for _ in range(per_tx):
                audit.record(s, actor=ACTOR, **FIELDS)
            s.commit()
    return n / (time.perf_counter() - t)


def fill(engine, n: int, batch: int = 5000) -> None:
    """n distinct records, `batch` per transaction, through prepare + append (as the committer does)."""
    from audit.log import append, prepare

    for start in range(0, n, batch):
        items = [
            prepare(actor=ACTOR, **{**FIELDS, "outcome": {**FIELDS["outcome"], "rows": i}})
            for i in range(start, min(n, start + batch))
        ]
        with Session(engine) as s:
            append(s, items)
            s.commit()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--appends", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=4.0)
    args = ap.parse_args()
    load0 = os.getloadavg()[0]
    freeze_startup_heap()  # as a serving worker does at start: no full GC walks the imports
    lines = ["# Audit benchmarks", ""]
    keyring = Keyring.generate()
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent) as d:
        tmp = Path(d)
        floor = fsync_ms(tmp / "fsync.probe")
        rate_rows, lat_rows, best_rate, added_p99 = [], [], {}, {}
        for name, engine in engines(tmp).items():
            _db.reset(engine)
            one = append_rate(engine, max(100, args.appends // 10), 1)
            batch = append_rate(engine, args.appends, 100)
            groups = [group_commit_rate(engine, n, args.seconds) for n in (16, 64, 256)]
            best_rate[name] = max(g[0] for g in groups)
            rate_rows.append(
                f"| {name} | {one:,.0f}/s | {batch:,.0f}/s | "
                + " | ".join(
                    f"**{r:,.0f}/s** ({p50:.1f} / {p99:.1f} ms; {cpu:.0f} µs CPU)" for r, p50, p99, cpu in groups
                )
                + " |"
            )
            for clients in (1, 8, 32):
                base = request_latency(engine, clients, args.seconds, audited=False)
                audited = request_latency(engine, clients, args.seconds, audited=True)
                added_p99[(name, clients)] = audited[2] - base[2]
                lat_rows.append(
                    f"| {name} | {clients} | {base[1]:.2f} / {base[2]:.2f} | {audited[1]:.2f} / {audited[2]:.2f} | "
                    f"{audited[1] - base[1]:.2f} / {audited[2] - base[2]:.2f} | {base[0]:,.0f} / {audited[0]:,.0f} |"
                )
            print(rate_rows[-1], *lat_rows[-3:], sep="\n", flush=True)
            engine.dispose()
        lines += [
            f"Machine: 2 cores shared with other engineers' work; load average (1 min) {load0:.2f} at the"
            f" start. Python {sys.version.split()[0]}. One write + fsync on this disk: {floor:.2f} ms"
            " (median) — the floor under any durable commit.",
            "",
            "## Append rate (durability on)",
            "",
            "Per commit: one writer, records appended with `audit.record` in its own transaction.",
            "Group commit: N threads each commit one entry through the gateway's group commit"
            " (`gateway.db._write_pending_audit`, what every read request does) and wait until it is"
            " committed; rate = durable appends per second, with each writer's wait p50 / p99 and the"
            " benchmark process's CPU time per append (all threads; the PostgreSQL server's is not counted).",
            "",
            "| backend | 1 per commit | 100 per commit | group commit, 16 writers | 64 writers | 256 writers |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
            *rate_rows,
            "",
            "## Latency added per audited request (ms, p50 / p99)",
            "",
            "A read request as the gateway runs it (`unit_of_work(read=True)` + one small query), without and"
            " with its audit entry (committed by the group commit, which the requests lead themselves; the"
            " request waits until it is durable), at 1, 8 and 32 concurrent closed-loop clients in one process.",
            "",
            "| backend | clients | without audit | with audit | added | requests/s without / with |",
            "| --- | ---: | --- | --- | --- | --- |",
            *lat_rows,
        ]
        # Verification: a large log in SQLite, checkpoints, export, verify.
        engine = _db.sqlite_engine(str(tmp / "big.db"), synchronous="OFF")
        _db.reset(engine)
        t = time.perf_counter()
        fill(engine, args.records)
        filled = time.perf_counter() - t
        t = time.perf_counter()
        with Session(engine) as s:
            sign_checkpoint(s, keyring)
            s.commit()
        cold = time.perf_counter() - t
        fill(engine, 1000)
        t = time.perf_counter()
        with Session(engine) as s:
            sign_checkpoint(s, keyring)
            s.commit()
        warm = time.perf_counter() - t
        t, c = time.perf_counter(), cpu_s()
        with Session(engine) as s:
            export(s, tmp / "export")
        exp, exp_cpu = time.perf_counter() - t, cpu_s() - c
        size_mb = (tmp / "export" / "records.jsonl").stat().st_size / 1e6
        runs = []
        for workers in (None, 1):
            load = os.getloadavg()[0]
            t, c = time.perf_counter(), cpu_s()
            result = verify_export(tmp / "export", keyring.public_keys, workers=workers)
            runs.append((workers, time.perf_counter() - t, cpu_s() - c, load))
            assert result.ok, result
        n = result.records
        (_, ver, ver_cpu, load_v), (_, ver1, ver1_cpu, load_1) = runs
        lines += [
            "",
            f"## Export and verification of a {n:,}-record export ({size_mb:,.0f} MB records.jsonl)",
            "",
            f"- setup: appending {args.records:,} records in transactions of 5,000 with **synchronous=OFF**"
            f" (setup only, not a durability figure): {filled:.1f} s",
            f"- first checkpoint over {args.records:,} records (cold subtree cache): {cold:.2f} s;"
            f" next checkpoint after 1,000 more: {warm * 1000:.0f} ms",
            f"- export to a directory: {exp:.1f} s = **{n / exp:,.0f} records/s** ({exp_cpu:.1f} CPU s)",
            f"- verify (layout, seq, leaf + chain hashes, Merkle roots of 2 checkpoints, 2 SM2 signatures),"
            f" one process per core: {ver:.2f} s = **{n / ver:,.0f} records/s**"
            f" (load average {load_v:.2f} when it started; {ver_cpu:.1f} CPU s ="
            f" {ver_cpu / n * 1e6:.1f} µs per record)",
            f"- the same, one process: {ver1:.2f} s = {n / ver1:,.0f} records/s (load average {load_1:.2f};"
            f" {ver1_cpu:.1f} CPU s)",
            "",
            f"Load average (1 min) at the end: {os.getloadavg()[0]:.2f}.",
            "",
            "## Goals",
            "",
            *(
                f"- ≥ 5,000 appends/s sustained, {name}: best {rate:,.0f}/s with 16–256 writers —"
                f" **{'met' if rate >= 5000 else 'not met'}**"
                for name, rate in best_rate.items()
            ),
            *(
                f"- ≤ 1 ms p99 added per request, {name}, {clients} client(s): {added:+.2f} ms —"
                f" **{'met' if added <= 1 else 'not met'}**"
                for (name, clients), added in added_p99.items()
                if clients == 1
            ),
            f"- verification ≥ 200,000 records/s: {n / ver:,.0f} records/s —"
            f" **{'met' if n / ver >= 200_000 else 'not met'}** on this run",
        ]
        engine.dispose()
    out = Path(__file__).parent / "results" / "audit.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
