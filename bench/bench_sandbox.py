"""Sandbox end to end (guard, decrypt, caged run, output control) vs plain DuckDB on the same 1M-row Parquet,
for a workspace's first query (cold) and its repeated queries (warm: the worker keeps decoded tables)."""

from __future__ import annotations

import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gmcrypto import sm3
from gmcrypto.keys import Keyring
from sandbox.budget import GrantBudget
from sandbox.output_control import OutputRules, check_output, columns_to_load, plan_query
from sandbox.parquet_ranges import ParquetRanges, read_columns
from sandbox.runner import Cached, CacheKey, Limits, ParquetBytes, SandboxRunner
from sandbox.sqlguard import guard

ROWS = 1_000_000
REPEATS = 7
QUERIES = {
    "count by district and age band": (
        "select district_code, (2025 - year(birth_date)) // 10 * 10 as age_band, count(*) as n "
        "from population group by 1, 2"
    ),
    "population joined with certificates": (
        "select p.district_code, c.cert_type, count(*) as n from population p "
        "join certificates c on p.id_number = c.holder_id group by 1, 2"
    ),
}
GRANTED = {
    "population": {"id_number", "gender", "birth_date", "district_code"},
    "certificates": {"cert_no", "holder_id", "cert_type"},
}
IDENTITY = {"population": "id_number", "certificates": "holder_id"}
TAGS = {
    "population": {"id_number": "id_number", "birth_date": "birth_date"},
    "certificates": {"holder_id": "id_number"},
}


def make(dir_: Path) -> dict[str, Path]:
    rng = np.random.default_rng(8)
    ids = np.char.add("5101", np.char.zfill(np.arange(ROWS).astype(str), 14))
    pop = pa.table(
        {
            "id_number": ids,
            "person_name": np.char.add("n", np.arange(ROWS).astype(str)),
            "gender": rng.choice(["F", "M"], ROWS),
            "birth_date": (np.datetime64("1940-01-01") + rng.integers(0, 30000, ROWS)).astype("datetime64[D]"),
            "district_code": rng.choice([f"5101{i:02d}" for i in range(4, 20)], ROWS),
        }
    )
    n_cert = ROWS // 2
    certs = pa.table(
        {
            "cert_no": np.char.add("C", np.arange(n_cert).astype(str)),
            "holder_id": ids[rng.integers(0, ROWS, n_cert)],
            "cert_type": rng.choice(["business_licence", "driving_licence", "marriage", "degree"], n_cert),
        }
    )
    paths = {"population": dir_ / "population.parquet", "certificates": dir_ / "certificates.parquet"}
    pq.write_table(pop, paths["population"])
    pq.write_table(certs, paths["certificates"])
    return paths


def plain(paths: dict[str, Path], sql: str) -> float:
    """The peer: plain DuckDB over the plaintext Parquet files, a fresh connection per query."""
    con = duckdb.connect()
    con.execute("set threads = 2")
    for name, p in paths.items():
        con.execute(f"create view {name} as select * from read_parquet('{p}')")
    t = time.perf_counter()
    con.sql(sql).to_arrow_table()
    elapsed = time.perf_counter() - t
    con.close()
    return elapsed


def in_memory(con: duckdb.DuckDBPyConnection, sql: str) -> float:
    """For context only: plain DuckDB with the same columns already decoded in memory (no cage, no checks)."""
    t = time.perf_counter()
    con.sql(sql).to_arrow_table()
    return time.perf_counter() - t


class Encrypted:
    """A dataset version encrypted at rest (SM4-GCM, data key wrapped by the keyring's KEK), as published."""

    def __init__(self, keyring: Keyring, name: str, plain_path: Path) -> None:
        data = plain_path.read_bytes()
        self.keyring, self.name = keyring, name
        self.digest = sm3.hexdigest(data)
        self.aad = f"pdg-at-rest:{name}:{self.digest}".encode()
        self.path = plain_path.with_suffix(".parquet.enc")
        keyring.encrypt_file(plain_path, self.path, aad=self.aad)
        self.size = plain_path.stat().st_size
        self.decrypt_s = 0.0  # time spent decrypting since the last reset
        self.decrypted = 0  # plaintext bytes decrypted since the last reset

    def load_whole(self, _columns: list[str] | None) -> ParquetBytes:
        """How versions were loaded before column ranges: the whole file decrypted and sent."""
        t = time.perf_counter()
        data = self.keyring.decrypt_file_to_bytes(self.path, aad=self.aad)
        self.decrypt_s += time.perf_counter() - t
        self.decrypted += len(data)
        return ParquetBytes(data)

    def load(self, columns: list[str] | None) -> ParquetRanges:
        """As the service loads a version (sandbox.workspaces.parquet_columns): only the chunks holding the
        footer and `columns` are decrypted."""
        t = time.perf_counter()
        with self.keyring.open_file(self.path, aad=self.aad) as reader:
            ranges = read_columns(reader, columns if columns is not None else [])
            self.decrypted += reader.bytes_opened
        self.decrypt_s += time.perf_counter() - t
        return ranges


def sandboxed(
    runner: SandboxRunner, files: dict[str, Encrypted], grant: int, sql: str, *, whole: bool = False
) -> tuple[float, dict]:
    """One query the way the service runs it: guard and plan, run caged over the grant's tables (decrypted
    only when the worker does not hold them warm), output control."""
    for f in files.values():
        f.decrypt_s, f.decrypted = 0.0, 0
    t = time.perf_counter()
    g = guard(sql, GRANTED)
    rules = OutputRules(max_rows=10_000)
    # population.id_number is unique and required (as the registered schema declares and the quality gate
    # enforces); certificates.holder_id is neither (a person holds several certificates)
    one = frozenset({"population"})
    plan = plan_query(g, rules=rules, identity_column_per_table=IDENTITY, field_tags=TAGS,
                      unique_identity=one, required_identity=one)  # fmt: skip
    # As the service does (sandbox.queries): only the tables the query uses, only the columns it reads plus
    # the identity columns output control's k count reads.
    read = columns_to_load(g, plan, IDENTITY)
    t_guard = time.perf_counter() - t
    sources = {
        n: Cached(CacheKey(grant, n, 1, f.digest), f.load_whole if whole else f.load)
        for n, f in files.items()
        if n in read
    }
    res = runner.run(plan.sql, sources, columns=read)
    t_run = time.perf_counter() - t - t_guard
    d = check_output(
        res,
        g,
        rules=rules,
        identity_column_per_table=IDENTITY,
        field_tags=TAGS,
        grant_budget=GrantBudget(max_queries=10**6, max_released_cells=10**9),
    )
    assert d.released, d.reasons
    total = time.perf_counter() - t
    decrypt = sum(f.decrypt_s for f in files.values())
    return total, {
        "guard": t_guard,
        "decrypt": decrypt,
        "worker": t_run - decrypt,
        "duckdb": res.run_ms / 1000,
        "check": total - t_guard - t_run,
        "mb": sum(f.decrypted for f in files.values()) / 1e6,
    }


def preloaded(runner: SandboxRunner, files: dict[str, Encrypted], grant: int) -> tuple[float, dict]:
    """Opening a workspace (sandbox.queries.preloader): every granted table, granted columns plus the
    identity column, decrypted and decoded into an idle worker before any query (off the request's path)."""
    for f in files.values():
        f.decrypt_s, f.decrypted = 0.0, 0
    t = time.perf_counter()
    sources = {n: Cached(CacheKey(grant, n, 1, f.digest), f.load) for n, f in files.items()}
    assert runner.preload(sources, {n: GRANTED[n] | {IDENTITY[n]} for n in files})
    total = time.perf_counter() - t
    decrypt = sum(f.decrypt_s for f in files.values())
    mb = sum(f.decrypted for f in files.values()) / 1e6
    return total, {"guard": 0.0, "decrypt": decrypt, "worker": total - decrypt, "duckdb": 0.0, "check": 0.0, "mb": mb}


def main() -> None:
    load_before = os.getloadavg()[0]
    rows: list[str] = []
    with tempfile.TemporaryDirectory() as d, SandboxRunner(Limits(timeout_s=60, memory_mb=4096)) as runner:
        paths = make(Path(d))
        keyring = Keyring.generate()
        files = {n: Encrypted(keyring, n, p) for n, p in paths.items()}
        mem = duckdb.connect()
        mem.execute("set threads = 2")
        for n, p in paths.items():
            mem.register(n, pq.read_table(p, columns=sorted(GRANTED[n])))
        runner.warm_up()
        grants = itertools.count(1000)
        for label, sql in QUERIES.items():
            # Interleaved (peer, cold, warm, in-memory reference in each round) so a busy host weighs on all alike.
            warm_grant = next(grants)
            plain(paths, sql), in_memory(mem, sql), sandboxed(runner, files, warm_grant, sql)  # warm-ups
            base, ref = [], []
            runs: dict[str, list] = {
                "cold, whole files (before)": [],
                "cold": [],
                "preload (workspace opened; not a query)": [],
                "first query after preload": [],
                "warm": [],
            }
            for _ in range(REPEATS):
                base.append(plain(paths, sql))
                cold_grant = next(grants)  # a grant the worker never saw: decrypt, send, decode
                runs["cold"].append(sandboxed(runner, files, cold_grant, sql))
                runner.forget_grants({cold_grant})
                cold_grant = next(grants)
                runs["cold, whole files (before)"].append(sandboxed(runner, files, cold_grant, sql, whole=True))
                runner.forget_grants({cold_grant})
                opened = next(grants)
                runs["preload (workspace opened; not a query)"].append(preloaded(runner, files, opened))
                runs["first query after preload"].append(sandboxed(runner, files, opened, sql))
                runner.forget_grants({opened})
                runs["warm"].append(sandboxed(runner, files, warm_grant, sql))  # the workspace's next query
                ref.append(in_memory(mem, sql))
            runner.forget_grants({warm_grant})
            b, r = statistics.median(base), statistics.median(ref)
            for path, rs in runs.items():
                tot = statistics.median(x[0] for x in rs)
                parts = {k: statistics.median(x[1][k] for x in rs) for k in rs[0][1]}
                ratio = "—" if path.startswith("preload") else f"**{tot / b:.2f}x**"
                rows.append(
                    f"| {label} | {path} | {b * 1000:.0f} | {tot * 1000:.0f} | {ratio} | "
                    f"{parts['guard'] * 1000:.0f} | {parts['decrypt'] * 1000:.0f} | {parts['mb']:.1f} | "
                    f"{parts['worker'] * 1000:.0f} | "
                    f"{parts['duckdb'] * 1000:.0f} | {parts['check'] * 1000:.1f} | {r * 1000:.0f} |"
                )
                print(rows[-1], flush=True)
    load_after = os.getloadavg()[0]
    out = [
        "# Sandbox benchmark",
        "",
        f"{ROWS:,} population rows, {ROWS // 2:,} certificates, both SM4-GCM encrypted at rest; median of "
        f"{REPEATS} rounds, each running the peer, a cold and a warm sandbox query and the in-memory reference "
        "in turn; plain DuckDB reads the same plaintext Parquet; 2 DuckDB "
        f"threads on both sides; 1-min load average {load_before:.2f} before, {load_after:.2f} after.",
        "",
        "- **cold**: the first query of a grant when nothing was preloaded — decrypt the chunks of the versions",
        "  that hold the footer and the columns the query reads (plus the identity column output control counts",
        "  by), send those byte ranges to the caged worker, decode, run, output control.",
        "- **cold, whole files (before)**: the same, decrypting and sending whole files, as before column ranges.",
        "- **preload**: what opening the workspace costs in the background (every granted table, granted",
        "  columns plus identity column, decrypted, sent and decoded into an idle worker); not a query, no ratio.",
        "- **first query after preload**: the grant's first query once the preload has finished.",
        "- **warm**: a repeated query in the same workspace — the worker still holds the grant's decoded",
        "  columns for that version, so nothing is decrypted or decoded; guard, run and output control as ever.",
        "",
        "| query | path | plain DuckDB ms | sandbox ms | ratio | guard+plan | decrypt | MB decrypted | "
        "worker (send, decode, run) | DuckDB in worker | output control | ref: plain DuckDB, tables in memory |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
    ]
    text = "\n".join(out) + "\n"
    if "--write" in sys.argv:
        results = Path(__file__).with_name("results").joinpath("sandbox.md")
        notes = results.read_text().split("\n## ", 1)
        text += ("\n## " + notes[1]) if len(notes) == 2 else ""  # keep the hand-written analysis below the table
        results.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
