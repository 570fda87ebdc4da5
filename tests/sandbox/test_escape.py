"""Hostile queries: each is refused by the guard with a clear reason, and the runner stays healthy."""

from __future__ import annotations

import pytest

from common.errors import Invalid, Timeout
from sandbox.runner import Limits
from sandbox.sqlguard import guard
from tests.sandbox.conftest import ALL_COLUMNS, GRANTED

HOSTILE = [
    ("select * from read_csv('/etc/passwd')", "table function"),
    ("select read_csv('/etc/passwd')", "reads files"),
    ("select * from read_parquet('s3://bucket/x.parquet')", "table function"),
    ("select * from '/etc/passwd'", "file paths"),
    ("select * from 'https://example.org/x.csv'", "file paths"),
    ("select * from glob('/etc/*')", "table function"),
    ("copy population to '/tmp/leak.csv'", "not COPY"),
    ("attach '/tmp/other.db' as other", "not ATTACH"),
    ("install httpfs", "not INSTALL"),
    ("load httpfs", "not COMMAND"),
    ("pragma database_list", "not PRAGMA"),
    ("set enable_external_access = true", "not SET"),
    ("call pragma_version()", "not COMMAND"),
    ("export database '/tmp/dump'", "could not parse"),
    ("create table t as select * from population", "not CREATE"),
    ("insert into population select * from population", "not INSERT"),
    ("update population set gender = 'x'", "not UPDATE"),
    ("delete from population", "not DELETE"),
    ("drop table population", "not DROP"),
    ("create view v as select person_name from population", "not CREATE"),
    ("select 1; select person_name from population", "exactly one statement"),
    ("select count(*) from population; drop table population", "exactly one statement"),
    ("select count(*) from population -- hidden\n; copy population to '/tmp/x'", "exactly one statement"),
    (
        "select count(*) from population where gender = '';copy population to '/tmp/x';--'",
        "exactly one statement",
    ),
    ("select count(*) from populаtion", "non-ASCII"),  # Cyrillic а
    ("select count(*) as ｎ from population", "non-ASCII"),  # full-width letter
    ("select getenv('HOME')", "settings"),
    ("select current_setting('enable_external_access')", "settings"),
    ("select * from duckdb_settings()", "system catalog"),
    ("select * from duckdb_tables()", "system catalog"),
    ("select * from information_schema.tables", "system catalog"),
    ("select * from pg_catalog.pg_class", "system catalog"),
    ("select * from sqlite_master", "not granted"),
    ("select person_name from population", "could not be resolved"),
    ("select n from (select person_name as n from population) s", "could not be resolved"),
    ("with v as (select * from population) select person_name from v", "could not be resolved"),
    ("select count(*) from population where person_name like 'A%'", "could not be resolved"),
    ("select count(*) from population p where exists (select 1 from secrets s)", "not granted"),
    ("select * from other.population", "qualified"),
    ("with recursive t(n) as (select 1 union all select n + 1 from t) select count(*) from t", "recursive"),
    ("select row_number() over () from population", "window"),
    ("select md5(id_number) from population", "allowlist"),
    ("select count(*) from population using sample 10", "TABLESAMPLE"),
    ("select count(*) from population, lateral (select 1)", "LATERAL"),
    ("select count(*) as __pdg_k from population", "reserved"),
    ("select ?", "not allowed"),
    ("select 1\x00", "control characters"),
]


@pytest.mark.parametrize(("sql", "reason"), HOSTILE, ids=[h[0][:40] for h in HOSTILE])
def test_hostile_query_refused_with_reason(sql: str, reason: str) -> None:
    with pytest.raises(Invalid) as err:
        guard(sql, GRANTED)
    assert err.value.detail.startswith("query refused:")
    assert reason.lower() in err.value.detail.lower()


def test_at_least_thirty_hostile_queries() -> None:
    assert len(HOSTILE) >= 30


def test_star_expands_to_granted_columns_only() -> None:
    g = guard("select * from population", GRANTED)
    assert "person_name" not in g.sql
    assert {c.name for c in g.output_columns} == GRANTED["population"]


def test_comments_are_dropped_from_the_sql_that_runs() -> None:
    g = guard("select /* ; copy population to '/tmp/x' */ count(*) as n from population -- tail", GRANTED)
    assert "copy" not in g.sql.lower() and "--" not in g.sql and "/*" not in g.sql


def test_sql_inside_a_string_stays_a_string() -> None:
    g = guard("select count(*) as n from population where gender = 'x; drop table population'", GRANTED)
    assert "'x; drop table population'" in g.sql


def test_guard_is_defence_in_depth_not_the_only_wall(runner, sources) -> None:
    # Even SQL that skipped the guard cannot read files, change settings or see ungranted columns.
    for sql in (
        "select * from read_csv('/etc/passwd')",
        "set threads = 8",
        "select person_name from population",
    ):
        with pytest.raises(Invalid):
            runner.run(sql, sources, columns=GRANTED)
    assert runner.run("select count(*) as n from population", sources, columns=GRANTED).rows == [{"n": 110}]


def test_cross_join_bomb_stopped_by_time_limit_then_runner_healthy(runner, sources) -> None:
    sql = guard(
        "select count(*) as n from population a, population b, population c, population d, population e",
        GRANTED,
    ).sql
    with pytest.raises(Timeout) as err:
        runner.run(
            sql, sources, columns=ALL_COLUMNS, limits=Limits(timeout_s=1.0, threads=1, kill_grace_s=3.0)
        )
    assert "time limit" in err.value.detail
    assert runner.run("select count(*) as n from population", sources).rows == [{"n": 110}]


def test_row_level_cross_join_bomb_stopped_by_row_cap(runner, sources) -> None:
    sql = guard("select a.gender from population a, population b, population c", GRANTED).sql
    res = runner.run(sql, sources, columns=GRANTED)
    assert res.truncated and res.rows_returned == 500
