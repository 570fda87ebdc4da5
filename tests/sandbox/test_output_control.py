"""Output control: k individuals per group, suppression, identifiers, differencing and the budget."""

from __future__ import annotations

import pytest

from sandbox.budget import GrantBudget
from sandbox.output_control import K_COLUMN, OutputRules, check_output, plan_query
from sandbox.sqlguard import guard
from tests.sandbox.conftest import ALL_COLUMNS, FIELD_TAGS, GRANTED, IDENTITY


@pytest.fixture
def ask(runner, sources):
    """Guard, plan, run and check one query against a budget, as the service will."""

    def _ask(sql: str, budget: GrantBudget, rules: OutputRules | None = None):
        rules = rules or OutputRules()
        g = guard(sql, GRANTED)
        plan = plan_query(g, rules=rules, identity_column_per_table=IDENTITY, field_tags=FIELD_TAGS)
        if plan.sql is None:
            return plan
        res = runner.run(plan.sql, sources, columns=ALL_COLUMNS)
        return check_output(
            res,
            g,
            rules=rules,
            identity_column_per_table=IDENTITY,
            field_tags=FIELD_TAGS,
            grant_budget=budget,
        )

    return _ask


def test_small_cell_and_its_complement_suppressed(ask) -> None:
    d = ask("select district_code, count(*) as n from population group by district_code", GrantBudget())
    assert d.released
    rows = {r["district_code"]: r["n"] for r in d.table.to_pylist()}
    assert "510107" not in rows  # 3 people: below k
    assert "510108" not in rows  # 12 people: hidden too, else total minus the rest gives 510107
    assert rows == {"510104": 40, "510105": 30, "510106": 25}
    assert K_COLUMN not in d.table.column_names
    assert d.suppressed_cells == 4 and "suppressed" in d.flags
    assert any("fewer than 10" in r for r in d.reasons)


def test_two_dimensional_suppression_covers_every_margin(ask) -> None:
    d = ask(
        "select district_code, gender, count(*) as n from population group by district_code, gender",
        GrantBudget(),
    )
    shown = {(r["district_code"], r["gender"]) for r in d.table.to_pylist()}
    for district in ("510107", "510108"):
        assert (district, "F") not in shown and (district, "M") not in shown
    by_gender: dict[str, int] = {}
    for _, g in shown:
        by_gender[g] = by_gender.get(g, 0) + 1
    assert by_gender == {"F": 3, "M": 3}


def test_rounding_to_base_five(ask) -> None:
    rules = OutputRules(rounding_base=5, secondary_suppression=False)
    d = ask(
        "select district_code, count(*) as n from population group by district_code", GrantBudget(), rules
    )
    assert all(r["n"] % 5 == 0 for r in d.table.to_pylist())
    assert {r["district_code"] for r in d.table.to_pylist()} == {"510104", "510105", "510106", "510108"}


def test_whole_result_below_k_refused(ask) -> None:
    d = ask("select count(*) as n from population where district_code = '510107'", GrantBudget())
    assert not d.released and d.table is None
    assert "fewer than 10 individuals" in d.reasons[0]


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("select id_number, count(*) as n from population group by id_number", "direct identifier"),
        (
            "select substr(id_number, 1, 6) as region, count(*) as n from population group by 1",
            "direct identifier",
        ),
        ("select gender, district_code from population", "row-level"),
        ("select district_code, max(birth_date) as b from population group by 1", "max() reveals"),
        ("select cert_no, count(*) as n from certificates group by 1", "direct identifier"),
        ("select district_code, min(id_number) as m from population group by 1", "min() reveals"),
    ],
)
def test_identifier_and_row_level_outputs_refused_before_running(ask, sql: str, reason: str) -> None:
    plan = ask(sql, GrantBudget())
    assert plan.sql is None and any(reason in r for r in plan.reasons)


def test_counting_distinct_identifiers_is_allowed(ask) -> None:
    d = ask(
        "select cert_type, count(distinct holder_id) as people from certificates group by 1", GrantBudget()
    )
    assert d.released and len(d.table) == 3


def test_join_counts_individuals_not_rows(ask) -> None:
    d = ask(
        "select c.cert_type, count(*) as n from population p join certificates c "
        "on p.id_number = c.holder_id where p.district_code = '510108' group by c.cert_type",
        GrantBudget(),
    )
    # 12 people hold 18 certificates: every type has fewer than 10 distinct holders.
    assert not d.released or len(d.table) == 0


def test_identity_threaded_through_ctes_and_outer_filters(ask) -> None:
    d = ask(
        "with f as (select * from population where gender = 'F') "
        "select d, n from (select district_code as d, count(*) as n from f group by 1) s where n > 0",
        GrantBudget(),
    )
    assert d.released and {r["d"] for r in d.table.to_pylist()} == {"510104", "510105", "510106"}


def test_union_cannot_be_checked(ask) -> None:
    plan = ask(
        "select gender as g, count(*) as n from population group by 1 "
        "union all select cert_type, count(*) from certificates group by 1",
        GrantBudget(),
    )
    assert plan.sql is None and "UNION" in plan.reasons[0]


def test_differencing_attack_by_two_overlapping_queries(ask) -> None:
    budget = GrantBudget()
    first = ask("select district_code, count(*) as n from population group by 1", budget)
    assert first.released
    # Same groups minus one person: subtracting would reveal that person's district.
    second = ask(
        "select district_code, count(*) as n from population "
        "where id_number <> '510104198001010000' group by 1",
        budget,
    )
    assert not second.released
    assert "released query #1" in second.reasons[0] and "subtracted" in second.reasons[0]
    # Renaming the key does not dodge the comparison either.
    third = ask(
        "select district_code as place, count(*) as n from population where gender <> 'X' "
        "and birth_date > date '1960-01-01' group by 1",
        budget,
    )
    assert not third.released and "released query #1" in third.reasons[0]
    # A query over the same population is fine.
    again = ask("select district_code, count(*) as total from population group by 1", budget)
    assert again.released


def test_budget_of_queries_exhausted(ask) -> None:
    budget = GrantBudget(max_queries=2)
    sql = "select district_code, count(*) as n from population group by 1"
    assert ask(sql, budget).released
    second = ask(sql, budget)
    assert second.released and "near_limit" in second.flags
    third = ask(sql, budget)
    assert not third.released and "query budget (2) is used up" in third.reasons[0]


def test_budget_of_cells_exhausted_and_state_round_trips(ask) -> None:
    budget = GrantBudget(max_released_cells=8)
    sql = "select district_code, count(*) as n from population group by 1"
    assert ask(sql, budget).released  # 3 rows x 2 columns
    assert budget.cells_released == 6
    restored = GrantBudget.from_json(budget.to_json())
    assert restored == budget
    d = ask(sql, restored)
    assert not d.released and "budget of 8 cells" in d.reasons[0]


def test_result_without_group_sizes_is_not_released(runner, sources) -> None:
    g = guard("select district_code, count(*) as n from population group by 1", GRANTED)
    res = runner.run(g.sql, sources)  # the lead forgot plan_query
    d = check_output(
        res,
        g,
        rules=OutputRules(),
        identity_column_per_table=IDENTITY,
        field_tags=FIELD_TAGS,
        grant_budget=GrantBudget(),
    )
    assert not d.released and "plan_query" in d.reasons[0]


def test_row_level_release_only_when_rules_allow_and_columns_not_identifying(ask) -> None:
    rules = OutputRules(aggregate_only=False)
    d = ask("select distinct district_code from population", GrantBudget(), rules)
    assert d.released and len(d.table) == 5
    plan = ask("select birth_date from population", GrantBudget(), rules)
    assert plan.sql is None and "identifying" in plan.reasons[0]
