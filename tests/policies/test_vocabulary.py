"""The vocabulary answers: grades of fields, implied checks, masking per audience, open/share rules."""

from __future__ import annotations

import pytest
import yaml

from common.errors import Invalid
from policies import vocabulary as v
from policies.vocabulary import POLICY_DIR

POPULATION = {
    "id": "id_number",
    "name": "person_name",
    "gender": "gender",
    "born": "birth_date",
    "phone": "phone",
    "addr": "address",
    "area": "admin_code",
}


def test_required_categories_tags_and_grade_scale() -> None:
    voc = v.default()
    assert set(voc.categories) == {
        "population",
        "legal_person",
        "geospatial",
        "certificate",
        "macro_economy",
        "thematic",
    }
    assert [g.code for g in voc.grades] == ["G1", "G2", "G3", "G4"] and voc.core.refused
    required = {
        "id_number",
        "person_name",
        "phone",
        "address",
        "birth_date",
        "usc_code",
        "geo_point",
        "certificate_no",
        "email",
        "bank_card",
        "free_text",
        "plain",
    }
    assert required <= set(voc.tags)


def test_dataset_grade_is_the_highest_field_grade_unless_raised() -> None:
    assert v.grade_of_fields({"a": "plain", "b": "usc_code"}) == (1, ())
    grade, reasons = v.grade_of_fields(POPULATION)
    assert grade == 3 and "id: tag id_number is G3" in reasons
    grade, reasons = v.grade_of_fields([("card", "bank_card"), ("x", "plain")])
    assert grade == 4 and reasons == ("card: tag bank_card is G4",)
    assert v.grade_of_fields({"a": "plain"}, raise_to=2) == (2, ("raised by policy to G2",))
    with pytest.raises(Invalid, match="core data is refused"):
        v.grade_of_fields({"a": "plain"}, raise_to=5)
    with pytest.raises(Invalid, match="unknown field tag 'passport'"):
        v.grade_of_fields({"a": "passport"})


def test_checks_implied_by_tags() -> None:
    (check,) = v.checks_for_tag("id_number")
    assert check.name == "gb11643" and check.severity == "error"
    usc = {c.name: c for c in v.checks_for_tag("usc_code")}
    assert usc["gb32100"].severity == "warn"
    used = {c.name for t in v.default().tags.values() for c in t.checks}
    assert used <= v.CHECK_NAMES


def test_masking_for_audience() -> None:
    m = v.masking_for("id_number", "public")
    assert (m.method, m.keep_first, m.keep_last) == ("partial", 4, 4)
    assert v.masking_for("id_number", "share").method == "none"
    assert v.masking_for("health_status", "share").method == "suppress"
    with pytest.raises(Invalid, match="unknown audience"):
        v.masking_for("id_number", "everyone")


def test_open_and_share_types_follow_grades() -> None:
    assert v.edition_grade(POPULATION, "public") == 1
    assert v.check_types(POPULATION, "unconditional", "conditional") == []
    assert v.check_types(POPULATION, "unconditional", "unconditional") == ["unconditional sharing allows at most G2"]
    assert v.may_open(3, "unconditional", open_edition_grade=2)[0] is False
    assert v.may_open(4, "conditional") == (True, "ok")
    assert v.may_share(2, "unconditional") == (True, "ok")
    with pytest.raises(Invalid, match="unknown open type"):
        v.may_open(1, "sometimes")


def test_thresholds_other_layers_read() -> None:
    voc = v.default()
    assert voc.output_control.min_group_size == 10 and "id_number" in voc.output_control.join_only_tags
    assert voc.alerts.off_hours.timezone == "Asia/Shanghai" and voc.alerts.off_hours.min_grade == 3
    assert voc.alerts.repeated_denials.count >= 1 and 0 < voc.alerts.near_limit.fraction <= 1


def test_parse_refuses_unknown_keys_and_wrong_types() -> None:
    data = yaml.safe_load((POLICY_DIR / "vocabulary.yaml").read_text(encoding="utf-8"))
    data["tags"]["phone"]["grades"] = 3
    with pytest.raises(Invalid, match=r"tags\.phone\.grades"):
        v.parse(data)
    del data["tags"]["phone"]["grades"]
    data["pseudonym_hex"] = "sixteen"
    with pytest.raises(Invalid, match="pseudonym_hex"):
        v.parse(data)
