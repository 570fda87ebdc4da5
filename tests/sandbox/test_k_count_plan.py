"""The k count: plain COUNT only where each row is one individual; the same group sizes either way."""

from __future__ import annotations

from sandbox.output_control import K_COLUMN, OutputRules, columns_to_load, plan_query
from sandbox.sqlguard import guard
from tests.sandbox.conftest import ALL_COLUMNS, FIELD_TAGS, GRANTED, IDENTITY

BY_DISTRICT = "select district_code, count(*) as n from population group by district_code"
JOINED = (
    "select p.district_code, count(*) as n from population p join certificates c "
    "on c.holder_id = p.id_number group by p.district_code"
)


def _planned(sql, unique, required=()):
    return plan_query(
        guard(sql, GRANTED),
        rules=OutputRules(),
        identity_column_per_table=IDENTITY,
        field_tags=FIELD_TAGS,
        unique_identity=frozenset(unique),
        required_identity=frozenset(required),
    )


def _plan(sql, unique, required=()):
    return _planned(sql, unique, required).sql


def _k(runner, sources, sql):
    table = runner.run(sql, sources, columns=ALL_COLUMNS).table.to_pylist()
    return sorted((r["district_code"], r[K_COLUMN]) for r in table)


def test_unique_identity_on_one_table_counts_rows(runner, sources):
    cheap, exact = _plan(BY_DISTRICT, {"population"}), _plan(BY_DISTRICT, set())
    assert "DISTINCT" not in cheap.upper() and "DISTINCT" in exact.upper()
    assert _k(runner, sources, cheap) == _k(runner, sources, exact)


def test_a_unique_required_identity_counts_rows_without_reading_the_column(runner, sources):
    plan = _planned(BY_DISTRICT, {"population"}, {"population"})
    assert "id_number" not in plan.sql and plan.k_reads == frozenset()
    assert _k(runner, sources, plan.sql) == _k(runner, sources, _plan(BY_DISTRICT, set()))
    # unique but nullable: COUNT(id), which skips nulls, so the column is still read
    assert _planned(BY_DISTRICT, {"population"}).k_reads == {("population", "id_number")}


def test_a_join_always_counts_distinct_individuals(runner, sources):
    assert "DISTINCT" in _plan(JOINED, {"population", "certificates"}, {"population", "certificates"}).upper()


def test_an_inner_join_on_equal_identities_counts_one_of_them(runner, sources):
    plan = _planned(JOINED, set())
    assert "LEAST" not in plan.sql.upper() and len(plan.k_reads) == 1
    both = JOINED.replace("c.holder_id = p.id_number", "c.holder_id = p.id_number and c.cert_type <> ''")
    assert "LEAST" not in _plan(both, set()).upper()
    # the same groups and k as counting both sides
    forced = plan_query(
        guard(JOINED.replace("on c.holder_id = p.id_number", "on c.holder_id || '' = p.id_number"), GRANTED),
        rules=OutputRules(),
        identity_column_per_table=IDENTITY,
        field_tags=FIELD_TAGS,
    ).sql
    assert "LEAST" in forced.upper()
    assert _k(runner, sources, plan.sql) == _k(runner, sources, forced)


def test_outer_joins_and_other_conditions_still_count_both_sides():
    left = JOINED.replace(" join ", " left join ")
    assert "LEAST" in _plan(left, set()).upper()
    other = JOINED.replace("c.holder_id = p.id_number", "c.holder_id = p.id_number or c.cert_type = 'x'")
    assert "LEAST" in _plan(other, set()).upper()


def test_the_worker_loads_the_identity_column_only_where_it_is_needed():
    def load(sql, unique=(), required=()):
        return columns_to_load(guard(sql, GRANTED), _planned(sql, unique, required), IDENTITY)

    assert load(BY_DISTRICT, {"population"}, {"population"}) == {"population": {"district_code"}}
    assert load(BY_DISTRICT) == {"population": {"district_code", "id_number"}}
    # a query that reads no column still gets one: DuckDB can't scan a table without columns
    assert load("select count(*) as n from population", {"population"}, {"population"}) == {"population": {"id_number"}}
    assert load(JOINED) == {"population": {"district_code", "id_number"}, "certificates": {"holder_id"}}
