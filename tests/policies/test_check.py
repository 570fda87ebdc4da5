"""Broken policy files are rejected by `pdg policies check` with file, line and a precise message."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from gateway.commands.policies import app
from policies.check import check_dir


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def line_of(path: Path, needle: str) -> int:
    return next(i for i, ln in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if needle in ln)


def only(problems: list) -> object:
    assert len(problems) == 1, problems
    return problems[0]


def test_packaged_policies_are_clean() -> None:
    assert check_dir() == []


def test_misspelled_cedar_attribute(policy_dir: Path) -> None:
    f = policy_dir / "access.cedar"
    edit(f, 'when { resource.open_type == "unconditional" };', 'when { resource.open_typ == "unconditional" };')
    p = only(check_dir(policy_dir))
    assert p.file == str(f) and p.line == line_of(f, '@id("open.read_unconditional")')
    assert "attribute `open_typ` on entity type `Dataset` not found" in p.message
    assert '@id "open.read_unconditional"' in p.message


def test_cedar_type_clash(policy_dir: Path) -> None:
    f = policy_dir / "access.cedar"
    edit(f, "when { resource.grade > 4 };", 'when { resource.grade > "4" };')
    p = only(check_dir(policy_dir))
    assert p.line == line_of(f, '@id("hard.core_refused")') and "expected Long" in p.message


def test_cedar_syntax_error_and_missing_id(policy_dir: Path) -> None:
    f = policy_dir / "access.cedar"
    edit(f, '@id("range.read")\n', "")
    edit(
        f,
        'permit (principal, action == Action::"dataset:read_metadata", resource);',
        'permit (principal, action == Action::"dataset:read_metadata", resource) when { true ;',
    )
    p = only(check_dir(policy_dir))
    assert p.line == line_of(f, '@id("catalog.read_metadata")') and "Cedar syntax error" in p.message
    edit(f, "when { true ;", ";")
    p = only(check_dir(policy_dir))
    assert p.line == line_of(f, 'action == Action::"experiment:read"') and "needs an @id" in p.message


def test_unknown_tag_and_unknown_check(policy_dir: Path) -> None:
    f = policy_dir / "vocabulary.yaml"
    edit(f, "join_only_tags: [id_number,", "join_only_tags: [id_numbr,")
    edit(f, "checks: [{name: phone_cn, mostly: 0.95}]", "checks: [{name: phone_china, mostly: 0.95}]")
    problems = check_dir(policy_dir)
    assert [p.line for p in problems] == sorted([line_of(f, "join_only_tags"), line_of(f, "phone_china")])
    messages = " | ".join(p.message for p in problems)
    assert "unknown field tag 'id_numbr'" in messages and "unknown check 'phone_china'" in messages


def test_grade_out_of_range_wrong_type_and_misspelled_key(policy_dir: Path) -> None:
    f = policy_dir / "vocabulary.yaml"
    edit(f, "zh: 手机号码\n    grade: 3", "zh: 手机号码\n    grade: 7")
    p = only(check_dir(policy_dir))
    assert p.line == line_of(f, "grade: 7") and "grade 7 out of range 1..4" in p.message
    edit(f, "grade: 7", 'grade: "three"')
    p = only(check_dir(policy_dir))
    assert p.line == line_of(f, 'grade: "three"') and "tags.phone.grade" in p.message and "integer" in p.message
    edit(f, 'grade: "three"', "grade: 3")
    edit(f, "min_group_size: 10", "min_grup_size: 10")
    problems = check_dir(policy_dir)
    assert any(p.line == line_of(f, "min_grup_size") and "unknown key 'min_grup_size'" in p.message for p in problems)


def test_g4_tag_may_not_leave_unmasked(policy_dir: Path) -> None:
    f = policy_dir / "vocabulary.yaml"
    edit(f, "share: {method: partial, keep_first: 0, keep_last: 4, result_grade: 2}", "share: {method: none}")
    p = only(check_dir(policy_dir))
    lines = f.read_text(encoding="utf-8").splitlines()
    assert "share: {method: none}" in lines[p.line - 1] and p.line > line_of(f, "bank_card:")
    assert "bank_card/share" in p.message and "never leave unmasked" in p.message


def test_overlay_problems_point_into_the_scenario_file(policy_dir: Path) -> None:
    f = policy_dir / "scenarios" / "market_supervision.yaml"
    edit(f, "  permit (principal,", "  forbid (principal,")
    edit(f, "context.participant &&", "context.participent &&")
    problems = check_dir(policy_dir)
    assert {p.file for p in problems} == {str(f)}
    assert all(p.line == line_of(f, "forbid (principal,") - 1 for p in problems)  # the @id line starts the rule
    text = " | ".join(p.message for p in problems)
    assert "only add permit rules" in text and "participent" in text


def test_overlay_ids_must_be_its_own(policy_dir: Path) -> None:
    f = policy_dir / "scenarios" / "natural_disaster.yaml"
    edit(f, '@id("scenario.natural_disaster.share_for_relief")', '@id("share.unconditional")')
    text = " | ".join(p.message for p in check_dir(policy_dir))
    assert "must start with 'scenario.natural_disaster.'" in text and "clashes with a baseline rule" in text


def test_scenario_file_shape(policy_dir: Path) -> None:
    f = policy_dir / "scenarios" / "natural_disaster.yaml"
    edit(f, "default_duration_hours: 168", "default_duration_hours: soon")
    edit(f, "categories: [population, geospatial]", "categories: [population, weather]")
    p = only(check_dir(policy_dir))
    assert p.line == line_of(f, "default_duration_hours") and "default_duration_hours" in p.message
    edit(f, "default_duration_hours: soon", "default_duration_hours: 168")
    p = only(check_dir(policy_dir))
    assert p.line == line_of(f, "categories:") and "unknown category 'weather'" in p.message


def test_schema_drift_from_the_action_registry(policy_dir: Path) -> None:
    f = policy_dir / "schema.cedarschema"
    edit(f, '"experiment:run", "experiment:read"', '"experiment:run"')
    messages = [p.message for p in check_dir(policy_dir)]
    assert any("registry action 'experiment:read' on Scenario does not fit the schema" in m for m in messages)


def test_cli_check_exit_codes(policy_dir: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["check", str(policy_dir)])
    assert ok.exit_code == 0 and "policy version" in ok.output
    edit(policy_dir / "access.cedar", "when { resource.grade > 4 };", "when { resource.grad > 4 };")
    bad = runner.invoke(app, ["check", str(policy_dir)])
    assert bad.exit_code == 1
    assert f"{policy_dir / 'access.cedar'}:{line_of(policy_dir / 'access.cedar', 'hard.core_refused')}:" in bad.output
    assert runner.invoke(app, ["check"]).exit_code == 0
