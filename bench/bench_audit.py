"""Audit benchmarks: append rate (SQLite WAL synchronous=FULL, PostgreSQL synchronous_commit=on), latency
added per audited request (record+commit vs commit alone, p50/p99), and verification rate of a large export.

Run: .venv/bin/python bench/bench_audit.py [--records 1000000]   (writes bench/results/audit.md)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
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
from gmcrypto.keys import Keyring
from tests.audit import _db

ACTOR = Actor(
    principal="ent:bench", role="enterprise", org="ENT-B", request_id="r-123456", client_addr="10.1.2.3"
)
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
    _db.ensure_pg_database()
    return {
        "sqlite (WAL, synchronous=FULL)": _db.sqlite_engine(str(tmp / "bench.db"), synchronous="FULL"),
        "postgresql (synchronous_commit=on)": _db.pg_engine(),
    }


def append_rate(engine, n: int, per_tx: int) -> float:
    t = time.perf_counter()
    for _ in range(n // per_tx):
        with Session(engine) as s:
            for _ in range(per_tx):
                audit.record(s, actor=ACTOR, **FIELDS)
            s.commit()
    return n / (time.perf_counter() - t)


def added_latency(engine, n: int) -> tuple[float, float, float, float]:
    """p50/p99 of (a tiny effect + commit) with and without an audit record, in ms."""
    base, audited = [], []
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS bench_effect (id INTEGER)"))
    for i in range(n):
        for with_audit, out in ((False, base), (True, audited)):
            t = time.perf_counter()
            with Session(engine) as s:
                s.execute(text("INSERT INTO bench_effect (id) VALUES (:i)"), {"i": i})
                if with_audit:
                    audit.record(s, actor=ACTOR, **FIELDS)
                s.commit()
            out.append((time.perf_counter() - t) * 1000)

    def pct(xs: list[float], p: float) -> float:
        return statistics.quantiles(xs, n=100)[int(p) - 1]

    return pct(base, 50), pct(base, 99), pct(audited, 50), pct(audited, 99)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--appends", type=int, default=4000)
    args = ap.parse_args()
    lines = ["# Audit benchmarks", "", f"Machine: 2 shared cores. Python {sys.version.split()[0]}.", ""]
    keyring = Keyring.generate()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        lines += [
            "## Append rate (durability on)",
            "",
            "| backend | 1 record per commit | 100 records per commit |",
            "| --- | ---: | ---: |",
        ]
        lat_rows = []
        for name, engine in engines(tmp).items():
            _db.reset(engine)
            one = append_rate(engine, max(200, args.appends // 10), 1)
            batch = append_rate(engine, args.appends, 100)
            lines.append(f"| {name} | {one:,.0f}/s | {batch:,.0f}/s |")
            b50, b99, a50, a99 = added_latency(engine, 300)
            lat_rows.append(
                f"| {name} | {b50:.2f} / {b99:.2f} | {a50:.2f} / {a99:.2f} | "
                f"{a50 - b50:.2f} / {a99 - b99:.2f} |"
            )
            print(lines[-1], lat_rows[-1], flush=True)
            engine.dispose()
        lines += [
            "",
            "## Latency added per audited request (ms, p50 / p99)",
            "",
            "| backend | effect+commit | effect+record+commit | added |",
            "| --- | --- | --- | --- |",
            *lat_rows,
        ]
        # Verification: a large log in SQLite (batched appends), one checkpoint, export, verify.
        engine = _db.sqlite_engine(str(tmp / "big.db"), synchronous="OFF")
        _db.reset(engine)
        t = time.perf_counter()
        append_rate(engine, args.records, 5000)
        fill = time.perf_counter() - t
        t = time.perf_counter()
        with Session(engine) as s:
            sign_checkpoint(s, keyring)
            s.commit()
        cold = time.perf_counter() - t
        append_rate(engine, 1000, 1000)
        t = time.perf_counter()
        with Session(engine) as s:
            sign_checkpoint(s, keyring)
            s.commit()
        warm = time.perf_counter() - t
        t = time.perf_counter()
        with Session(engine) as s:
            export(s, tmp / "export")
        exp = time.perf_counter() - t
        t = time.perf_counter()
        result = verify_export(tmp / "export", keyring.public_keys)
        ver = time.perf_counter() - t
        assert result.ok, result
        n = result.records
        lines += [
            "",
            f"## Verification of a {n:,}-record export",
            "",
            f"- appending {args.records:,} records in batches of 5,000 (synchronous=OFF, setup only): "
            f"{fill:.1f} s",
            f"- first checkpoint over {args.records:,} records (cold subtree cache): {cold:.2f} s;"
            f" next checkpoint after 1,000 more: {warm * 1000:.0f} ms",
            f"- export to a directory: {exp:.1f} s ({n / exp:,.0f} records/s)",
            f"- verify (leaf + chain + Merkle root + 2 SM2 signatures, one process): {ver:.1f} s"
            f" = **{n / ver:,.0f} records/s**",
        ]
        engine.dispose()
    out = Path(__file__).parent / "results" / "audit.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
