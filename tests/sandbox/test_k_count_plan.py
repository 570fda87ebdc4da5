"""The k count: plain COUNT only where each row is one individual; the same group sizes either way."""

from __future__ import annotations

from sandbox.output_control import K_COLUMN, OutputRules, plan_query
from sandbox.sqlguard import guard
from tests.sandbox.conftest import ALL_COLUMNS, FIELD_TAGS, GRANTED, IDENTITY

BY_DISTRICT = "select district_code, count(*) as n from population group by district_code"
JOINED = (
    "select p.district_code, count(*) as n from population p join certificates c "
    "on c.holder_id = p.id_number group by p.district_code"
)


def _plan(sql, unique):
    return plan_query(
        guard(sql, GRANTED),
        rules=OutputRules(),
        identity_column_per_table=IDENTITY,
        field_tags=FIELD_TAGS,
        unique_identity=frozenset(unique),
    ).sql


def _k(runner, sources, sql):
    table = runner.run(sql, sources, columns=ALL_COLUMNS).table.to_pylist()
    return sorted((r["district_code"], r[K_COLUMN]) for r in table)


def test_unique_identity_on_one_table_counts_rows(runner, sources):
    cheap, exact = _plan(BY_DISTRICT, {"population"}), _plan(BY_DISTRICT, set())
    assert "DISTINCT" not in cheap.upper() and "DISTINCT" in exact.upper()
    assert _k(runner, sources, cheap) == _k(runner, sources, exact)


def test_a_join_always_counts_distinct_individuals(runner, sources):
    assert "DISTINCT" in _plan(JOINED, {"population", "certificates"}).upper()
