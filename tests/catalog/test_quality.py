"""Quality stage: plan, counts, masking, thresholds, verdict, score and the GX suite contract."""

from __future__ import annotations

import json
from typing import ClassVar

import pandas as pd
import pytest

from catalog import samples
from catalog.quality import run_gx_only, run_quality
from common.errors import Invalid


@pytest.fixture(scope="module")
def population():
    return samples.generate("population", 3000, seed=21, defects=0.01)


def _by(report, check, column=None):
    return next(
        c for c in report.checks if c.check == check and (column is None or c.kwargs.get("column") == column)
    )


def test_counts_match_the_injected_defects(population, tag_checks) -> None:
    r = run_quality(population.frame, schema=population.schema, tag_checks=tag_checks)
    d = population.defects
    assert _by(r, "gb11643").unexpected_count == len(d["check_digit"])
    assert [s.row for s in _by(r, "gb11643").samples] == d["check_digit"][:10]
    assert _by(r, "unique", "person_id").unexpected_count == 2 * len(d["duplicate"])
    assert _by(r, "date_valid", "birth_date").unexpected_count == len(d["impossible_date"])
    assert _by(r, "phone_cn").passed and _by(r, "admin_division").passed and _by(r, "in_set", "gender").passed
    assert r.verdict == "rejected" and r.rows == 3000 and r.engine == "fast"
    c = _by(r, "gb11643")
    assert c.unexpected_percent == pytest.approx(100 * 30 / 3000)
    assert 90 < r.score < 100


def test_the_report_never_holds_a_raw_sensitive_value(population, tag_checks) -> None:
    r = run_quality(population.frame, schema=population.schema, tag_checks=tag_checks)
    text = r.model_dump_json()
    bad_ids = population.frame["person_id"].iloc[[i - 1 for i in population.defects["check_digit"]]]
    assert not any(i in text for i in bad_ids)
    sample = _by(r, "gb11643").samples[0]
    assert sample.key[0] == "5" and "*" in sample.key and len(sample.key) == 18
    seen = []
    r = run_quality(
        population.frame,
        schema=population.schema,
        tag_checks=tag_checks,
        mask=lambda tag, s: (seen.append(tag), s.map(lambda _: "MASKED"))[1],
    )
    assert _by(r, "gb11643").samples[0].key == "MASKED" and "id_number" in seen


def test_warn_severity_and_mostly_decide_the_verdict(tag_checks) -> None:
    lp = samples.generate("legal_person", 1000, seed=3, defects=0.01)
    df = lp.frame.drop_duplicates("uscc", keep=False)
    df = df[~df["established_date"].str.endswith("-02-30")]
    r = run_quality(df, schema=lp.schema, tag_checks=tag_checks)
    gb = _by(r, "gb32100", "uscc")
    assert not gb.passed and gb.severity == "warn" and gb.unexpected_count == 10
    assert r.verdict == "accepted"  # a failing warning never rejects
    strict = {**tag_checks, "usc_code": [{"check": "gb32100"}]}
    assert run_quality(df, schema=lp.schema, tag_checks=strict).verdict == "rejected"
    lenient = {**tag_checks, "usc_code": [{"check": "gb32100", "mostly": 0.95}]}
    r = run_quality(df, schema=lp.schema, tag_checks=lenient)
    assert _by(r, "gb32100").passed and _by(r, "gb32100").mostly == 0.95 and r.verdict == "accepted"


def test_geo_pairs_and_nulls(tag_checks) -> None:
    g = samples.generate("geospatial", 500, seed=3, defects=0.02)
    r = run_quality(g.frame, schema=g.schema, tag_checks=tag_checks)
    coord = _by(r, "coord_china")
    assert coord.kwargs == {"column_A": "lon", "column_B": "lat"}
    assert [s.row for s in coord.samples] == g.defects["out_of_china"][:10]
    df = g.frame.copy()
    df.loc[0, "lon"] = None
    r = run_quality(df, schema=g.schema, tag_checks=tag_checks)
    assert _by(r, "not_null", "lon").unexpected_count == 1 and _by(r, "not_null", "lon").samples[0].row == 1


def test_unknown_check_or_bad_threshold_is_invalid(population) -> None:
    with pytest.raises(Invalid, match="unknown check"):
        run_quality(population.frame, schema=population.schema, tag_checks={"phone": [{"check": "psychic"}]})
    with pytest.raises(Invalid, match="mostly"):
        run_quality(
            population.frame,
            schema=population.schema,
            tag_checks={"phone": [{"check": "phone_cn", "mostly": 2}]},
        )


def test_report_is_json_in_gx_shape(population, tag_checks) -> None:
    r = run_quality(population.frame, schema=population.schema, tag_checks=tag_checks)
    gx = json.loads(json.dumps(r.to_gx()))
    assert gx["success"] is False and gx["statistics"]["evaluated_expectations"] == len(r.checks)
    first = gx["results"][0]
    assert set(first) >= {"success", "expectation_config", "result", "exception_info"}
    assert set(first["result"]) >= {"element_count", "unexpected_count", "unexpected_percent"}


class TestWithGreatExpectations:
    """These import GX (seconds, once per process)."""

    SUITE: ClassVar[dict] = {
        "name": "dept",
        "expectations": [
            {
                "type": "expect_column_value_lengths_to_be_between",
                "kwargs": {"column": "name", "min_value": 2, "max_value": 3},
            },
            {
                "type": "expect_column_values_to_be_increasing",
                "kwargs": {"column": "updated_at"},
                "severity": "warning",
            },
        ],
    }

    def test_declared_suite_runs_fast_and_through_gx(self, population, tag_checks) -> None:
        r = run_quality(
            population.frame,
            schema=population.schema,
            tag_checks=tag_checks,
            suite_json=json.dumps(self.SUITE),
        )
        lengths = _by(r, "expect_column_value_lengths_to_be_between")
        expected = int((~population.frame["name"].str.len().between(2, 3)).sum())
        assert lengths.source == "suite" and lengths.unexpected_count == expected
        inc = _by(r, "expect_column_values_to_be_increasing")  # not on the fast path: GX ran it
        assert not inc.passed and inc.severity == "warn" and r.suite_name == "dept"

    def test_a_suite_that_would_lose_expectations_fails_loudly(self, population, tag_checks) -> None:
        suite = {
            "name": "x",
            "expectations": [
                *self.SUITE["expectations"],
                {"type": "expect_column_values_to_be_magic", "kwargs": {}},
            ],
        }
        with pytest.raises(Invalid, match="holds 3 expectations but only 2 loaded") as err:
            run_quality(population.frame, schema=population.schema, tag_checks=tag_checks, suite_json=suite)
        assert err.value.extra["lost"] == ["expect_column_values_to_be_magic"]
        with pytest.raises(Invalid, match="not valid JSON"):
            run_quality(population.frame, schema=population.schema, tag_checks=tag_checks, suite_json="{nope")

    def test_gx_only_baseline_agrees_where_gx_can_check(self, population, tag_checks) -> None:
        fast = run_quality(population.frame, schema=population.schema, tag_checks=tag_checks)
        gx = run_gx_only(population.frame, schema=population.schema, tag_checks=tag_checks)
        assert gx.engine == "gx"
        assert (
            _by(gx, "unique", "person_id").unexpected_count
            == _by(fast, "unique", "person_id").unexpected_count
        )
        assert [s.row for s in _by(gx, "unique", "person_id").samples] == [
            s.row for s in _by(fast, "unique", "person_id").samples
        ]
        # GX has no check-digit expectation: its shape regex passes IDs with a wrong check digit
        assert _by(gx, "gb11643").unexpected_count == 0 < _by(fast, "gb11643").unexpected_count
        assert isinstance(pd.DataFrame([c.model_dump() for c in gx.checks]), pd.DataFrame)
