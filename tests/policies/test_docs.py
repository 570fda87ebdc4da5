"""docs/policies.md stays in step with the files: every rule id, scenario and tag is documented."""

from __future__ import annotations

from pathlib import Path

from policies import cedartext
from policies.engine import Engine
from policies.vocabulary import POLICY_DIR, default

DOC = (Path(__file__).resolve().parents[2] / "docs" / "policies.md").read_text(encoding="utf-8")


def test_every_rule_id_is_documented() -> None:
    ids = [p.id for p in cedartext.policies((POLICY_DIR / "access.cedar").read_text(encoding="utf-8"))]
    missing = [i for i in ids if f"`{i}`" not in DOC]
    assert missing == []


def test_every_scenario_and_tag_is_documented() -> None:
    assert [s for s in Engine.load().scenarios if f"`{s}`" not in DOC] == []
    assert [t for t in default().tags if f"`{t}`" not in DOC] == []
