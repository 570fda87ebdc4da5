"""The guard's analysis of allowed queries: regenerated SQL, lineage, aggregates, group keys, digest."""

from __future__ import annotations

import pytest

from common.errors import Invalid
from gmcrypto import sm3
from sandbox.sqlguard import guard
from tests.sandbox.conftest import GRANTED


def test_regenerated_sql_and_digest() -> None:
    g = guard("SELECT district_code, COUNT(*) AS n FROM population GROUP BY 1 -- note", GRANTED)
    assert g.sql.startswith('SELECT "population"."district_code"') and "note" not in g.sql
    assert g.digest == sm3.hexdigest(g.sql.encode()) and len(g.digest) == 64
    assert g.tables == ("population",)
    assert g.group_by == ("district_code",)
    assert g.aggregates_used == {"count"}


def test_lineage_through_cte_subquery_and_alias() -> None:
    g = guard(
        "with adults as (select district_code as d, birth_date from population where gender = 'F') "
        "select x.d as place, avg(year(x.birth_date)) as y from (select * from adults) x group by x.d",
        GRANTED,
    )
    place, y = g.output_columns
    assert place.sources == {"population.district_code"} and place.group_key and not place.aggregate
    assert y.sources == {"population.birth_date"} and y.aggregate and y.functions == {"avg"}
    assert y.agg_inputs == (("avg", frozenset({"population.birth_date"})),)
    assert g.columns_read >= {"population.district_code", "population.birth_date", "population.gender"}
    assert any("gender" in f for f in g.filters)


def test_aggregate_of_outer_select_inherited() -> None:
    g = guard("select n from (select count(*) as n from population) s", GRANTED)
    assert g.output_columns[0].aggregate and not g.output_columns[0].row_level


def test_row_level_column_marked() -> None:
    g = guard("select gender from population", GRANTED)
    assert g.output_columns[0].row_level and not g.output_columns[0].aggregate


def test_join_reads_both_tables() -> None:
    g = guard(
        "select c.cert_type, count(*) as n from population p join certificates c "
        "on p.id_number = c.holder_id group by all",
        GRANTED,
    )
    assert g.tables == ("certificates", "population")
    assert {"population.id_number", "certificates.holder_id"} <= g.columns_read


def test_granted_names_are_case_insensitive_but_exact() -> None:
    assert guard("SELECT COUNT(*) AS n FROM POPULATION", GRANTED).tables == ("population",)


@pytest.mark.parametrize("sql", ["", "   ", "select", "select from where"])
def test_empty_or_broken_sql_is_invalid(sql: str) -> None:
    with pytest.raises(Invalid, match="query refused"):
        guard(sql, GRANTED)


def test_deeply_nested_query_refused_cleanly() -> None:
    with pytest.raises(Invalid, match="query refused"):
        guard("select " + "(" * 3000 + "1" + ")" * 3000, GRANTED)


def test_duplicate_output_names_refused() -> None:
    with pytest.raises(Invalid, match="unique"):
        guard("select gender as g, district_code as g from population", GRANTED)
