"""Markdown tables from `bench/load/run.py` results: requests/s, p50 and p99 per endpoint and stage, memory.

    .venv/bin/python bench/load/report.py bench/results/load.json [bench/results/load-postgresql.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

NAMES = {
    "catalog_search": "catalog search",
    "row_page": "row page",
    "download_csv": "CSV download",
    "sandbox_query": "sandbox query",
    "audit_search": "audit search",
}


def table(res: dict) -> str:
    """One row per stage; each endpoint cell is `requests/s · p50 / p99 ms`, with errors when any."""
    head = "| clients | " + " | ".join(NAMES.values()) + " | errors |"
    lines = [head, "| ---: |" + " --- |" * len(NAMES) + " ---: |"]
    for st in res["stages"]:
        cells, errors = [], 0
        for key in NAMES:
            e = st["endpoints"].get(key, {})
            if "requests" not in e:
                cells.append("no result")
                continue
            errors += e["non2xx"] + e["socket_errors"]
            if not e["requests"]:
                cells.append("none finished within the stage")
                continue
            cells.append(f"{e['rps']:,} · {e['p50_ms']:,.0f} / {e['p99_ms']:,.0f}")
        lines.append(f"| {st['clients']} | " + " | ".join(cells) + f" | {errors} |")
    return "\n".join(lines)


def memory(res: dict) -> str:
    mem = res["memory_summary_mb"]
    lines = ["| process | start MB | peak per stage MB | end MB |", "| --- | ---: | --- | ---: |"]
    for role, label in (
        ("master", "supervisor"),
        ("gateway_workers", "gateway workers (all)"),
        ("sandbox_workers", "sandbox workers (all)"),
        ("total", "total"),
    ):
        m = mem[role]
        stages = " → ".join(f"{x:,}" for x in m["stage_max"])
        lines.append(f"| {label} | {m['start']:,.0f} | {stages} | {m['end']:,.0f} |")
    return "\n".join(lines)


def main() -> None:
    for path in sys.argv[1:]:
        res = json.loads(Path(path).read_text(encoding="utf-8"))
        print(f"**{res.get('database', 'sqlite')}**, {res['workers']} workers, {res['stage_seconds']} s per stage\n")
        print(table(res) + "\n")
        print(memory(res) + "\n")


if __name__ == "__main__":
    main()
