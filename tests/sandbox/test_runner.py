"""The caged runner: results, column pruning, limits, timeouts and crashes reported cleanly."""

from __future__ import annotations

import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from common.errors import Invalid, Timeout, TooLarge
from sandbox.runner import Limits, ParquetBytes, SandboxRunner, WorkerCrashed
from sandbox.sqlguard import guard
from tests.sandbox.conftest import GRANTED, parquet_bytes

BOMB = "select count(*) as n from population a, population b, population c, population d, population e"


def test_runs_guarded_sql_over_file_and_in_memory_sources(runner, sources) -> None:
    g = guard(
        "select c.cert_type, count(*) as n from population p join certificates c "
        "on p.id_number = c.holder_id group by c.cert_type order by c.cert_type",
        GRANTED,
    )
    res = runner.run(g.sql, sources, columns=GRANTED)
    assert res.columns == ["cert_type", "n"]
    assert sum(r["n"] for r in res.rows) == 165  # 110 people, every second one holds two certificates
    assert res.rows_scanned == 110 + 165 and res.rows_returned == 3 and not res.truncated


def test_only_requested_columns_are_loaded(runner, sources) -> None:
    with pytest.raises(Invalid, match="Binder"):
        runner.run("select count(person_name) from population", sources, columns=GRANTED)


def test_timeout_reported_with_advice_and_worker_reused(runner, sources) -> None:
    before = runner.worker_pids()
    with pytest.raises(Timeout) as err:
        runner.run(BOMB, sources, limits=Limits(timeout_s=0.5, threads=1, kill_grace_s=3.0))
    assert err.value.status == 408 and "cross joins" in err.value.detail
    assert runner.run("select 1 as x", {}).rows == [{"x": 1}]
    assert runner.worker_pids() == before  # interrupted, not killed: the warm worker survives


def test_hung_worker_is_killed_on_overrun(sources) -> None:
    # A stopped (SIGSTOP) worker cannot honour its own interrupt: the parent must kill it at the deadline.
    with SandboxRunner(Limits(timeout_s=0.5, threads=1, kill_grace_s=0.5)) as r:
        r.warm_up()
        first = r.worker_pids()
        threading.Timer(0.2, os.kill, (first[0], signal.SIGSTOP)).start()
        with pytest.raises(Timeout):
            r.run(BOMB, {"population": sources["population"]})
        assert r.worker_pids() == []
        assert r.run("select 41 + 1 as x", {}).rows == [{"x": 42}]
        assert r.worker_pids() != first


def test_worker_crash_reported_and_replaced(sources) -> None:
    with SandboxRunner(Limits(timeout_s=20, threads=1)) as r:
        r.warm_up()
        pid = r.worker_pids()[0]
        threading.Timer(0.5, os.kill, (pid, signal.SIGKILL)).start()
        with pytest.raises(WorkerCrashed) as err:
            r.run(BOMB, {"population": sources["population"]})
        assert err.value.status == 503 and "replaced" in err.value.detail
        assert r.run("select count(*) as n from population", sources).rows == [{"n": 110}]


def test_memory_limit_reported(runner, population) -> None:
    big = {"population": ParquetBytes(parquet_bytes(population))}
    sql = (
        "select count(distinct a.id_number || b.id_number || c.id_number) as n "
        "from population a, population b, population c"
    )
    with pytest.raises(TooLarge) as err:
        runner.run(sql, big, limits=Limits(memory_mb=16, timeout_s=20, threads=1))
    assert "16 MB memory limit" in err.value.detail


def test_error_messages_never_quote_row_values(runner, sources) -> None:
    with pytest.raises(Invalid) as err:
        runner.run("select cast(id_number as integer) from population", sources)
    assert "5101" not in err.value.detail and "ConversionException" in err.value.detail


def test_bad_source_is_a_domain_error(runner) -> None:
    with pytest.raises(Invalid, match="source"):
        runner.run("select 1", {"population": ParquetBytes(b"not parquet")})


@pytest.mark.parametrize("how", ["script", "module"])
def test_worker_start_does_not_rerun_the_parents_main_module(tmp_path, how: str) -> None:
    """Under `pdg serve` (a script) or `python -m gateway.cli` the parent's __main__ is the CLI; a worker
    must not import all of it again."""
    import subprocess
    import sys
    from pathlib import Path

    repo, marker = Path(__file__).resolve().parents[2], tmp_path / "rerun"
    script = tmp_path / "serve_like.py"
    script.write_text(
        "import sys\n"
        f"if __name__ == '__mp_main__':\n    open({str(marker)!r}, 'w').write('main script ran again')\n"
        "if __name__ == '__main__':\n"
        f"    sys.path.insert(0, {str(repo)!r})\n"
        "    from sandbox.runner import SandboxRunner\n"
        "    with SandboxRunner(pool_size=1) as runner:\n"
        "        runner.warm_up()\n"
        "        print(len(runner.worker_pids()))\n"
    )
    argv = [str(script)] if how == "script" else ["-m", script.stem]
    out = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "1"  # a worker did start ...
    assert not marker.exists()  # ... without running the script again


def test_warm_up_starts_the_whole_pool_and_queries_then_start_no_process(sources) -> None:
    with SandboxRunner(Limits(timeout_s=10.0, threads=1), pool_size=2) as r:
        r.warm_up(workers=5)  # capped at the pool
        warm = sorted(r.worker_pids())
        assert len(warm) == 2
        r.warm_up(workers=2)  # already warm: nothing more starts
        assert sorted(r.worker_pids()) == warm
        barrier = threading.Barrier(2)

        def query() -> int:
            barrier.wait()
            return r.run("select count(*) as n from population", {"population": sources["population"]}).rows[0]["n"]

        with ThreadPoolExecutor(2) as pool:
            counts = list(pool.map(lambda _: query(), range(2)))
        assert counts == [110, 110] and sorted(r.worker_pids()) == warm
