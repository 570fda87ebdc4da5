"""Assemble BENCHMARKS.md from the per-area results in bench/results/ (each written by its bench script)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDER = ["crypto", "policies", "audit", "publish", "open", "sandbox", "replicas", "load"]
HEADER = """# Benchmarks

Every figure comes from a script in `bench/` run on this project's machine kind (2 cores, 24 GiB), with the
peer it is compared against measured in the same run; ratios are the point, absolute numbers move with load.
Each section names its command and conditions. Where a goal from the issues is not met, the section says so.
Sections are assembled by `python bench/collect.py` from `bench/results/*.md`.

| area | script | compared against |
| --- | --- | --- |
| GM cryptography | `bench/bench_crypto.py` | `openssl speed` (SM4-CTR, SM2), gmssl |
| decision point, masking | `bench/bench_policies.py` | goals (decisions/s, 1M-row open edition) |
| audit log | `bench/bench_audit.py` | commit alone (added latency) |
| publish (end to end) | `bench/bench_publish.py` | Great Expectations alone, same suite |
| open data | `bench/bench_open.py` | Datasette 0.65 and `sqlite3 -csv`, same data (`../shared/bench/peer/`) |
| sandbox | `bench/bench_sandbox.py` | plain DuckDB on the same plaintext Parquet |
| replicas | `bench/bench_replicas.py` | one replica vs three on one PostgreSQL |
| load | `bench/load/run.py` | 10 → 200 clients, mixed workload |

"""


def main() -> None:
    parts = [HEADER]
    for name in ORDER:
        path = ROOT / "bench" / "results" / f"{name}.md"
        if path.exists():
            text = path.read_text(encoding="utf-8").strip()
            # Each file's headings go one level down, its title becoming a section of this page.
            lines = ["#" + line if line.startswith("#") else line for line in text.splitlines()]
            if lines and lines[0].startswith("##") and not lines[0].startswith("## "):
                lines[0] = "## " + lines[0].lstrip("#").strip()
            parts.append("\n".join(lines) + "\n")
    (ROOT / "BENCHMARKS.md").write_text("\n".join(parts), encoding="utf-8")


if __name__ == "__main__":
    main()
