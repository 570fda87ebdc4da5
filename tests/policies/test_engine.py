"""The decision point: hard lines, scenarios, overlays that cannot relax forbids, versions, reloads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from gmssl import sm3 as gmssl_sm3

from common.actor import Actor
from common.errors import Denied, Invalid
from policies import actions
from policies.engine import Context, Engine, Grant, Resource, get_engine, set_engine, version_of

NOW = datetime(2026, 5, 12, 6, 0, tzinfo=UTC)
OWNER = Actor("p-owner", "department", "510100-GA")
HEALTH = Actor("p-health", "department", "510100-WJW")
TAX = Actor("p-tax", "department", "510100-SWJ")  # not a public-health participant
ENTERPRISE = Actor("p-ent", "enterprise", "91510100-ACME")
OPERATOR = Actor("p-op", "operator", "510100-OPS")


def ds(grade: int = 3, ot: str = "conditional", st: str = "conditional", category: str = "population") -> Resource:
    return Resource.dataset("pop-1", category=category, grade=grade, open_type=ot, share_type=st, owner="510100-GA")


def grant_for(actor: Actor, **kw: object) -> Grant:
    base: dict = dict(
        org=actor.org,
        datasets={"pop-1"},
        purpose="research",
        expires_at=NOW + timedelta(days=1),
        columns={"name", "age"},
    )
    base.update(kw)
    return Grant(**base)


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine.load()


def test_allowed_decision_names_the_rule_version_and_action(engine: Engine) -> None:
    d = engine.authorize(Actor.public(), "dataset:read_open", ds(ot="unconditional"), Context(raw_grade=1))
    assert d.allowed and d.reasons == ("open.read_unconditional",)
    assert d.policy_version == engine.policy_version and len(d.policy_version) == 64
    assert d.scenario is None and d.action == "dataset:read_open"


def test_default_deny_has_no_reasons_and_require_raises_denied(engine: Engine) -> None:
    d = engine.authorize(Actor.public(), "dataset:publish", ds())
    assert not d.allowed and d.reasons == ()
    with pytest.raises(Denied) as exc:
        engine.require(Actor.public(), "dataset:publish", ds())
    assert exc.value.decision == d and "no rule permits it" in exc.value.detail


@pytest.mark.parametrize(
    ("actor", "action", "context", "rule"),
    [
        (OWNER, "dataset:read_shared", Context(raw_grade=4), "hard.g4_raw_never_leaves"),
        (
            ENTERPRISE,
            "export:create",
            Context(raw_grade=4, grant=grant_for(ENTERPRISE)),
            "hard.g4_raw_never_leaves",
        ),
        (OWNER, "request:approve", Context(requester="p-owner"), "hard.no_self_approval"),
        (
            OWNER,
            "request:approve",
            Context(requester="p-other", requester_org="510100-GA"),
            "hard.no_self_approval",
        ),
        (OWNER, "export:review", Context(requester="p-owner"), "hard.no_self_approval"),
        (OPERATOR, "export:review", Context(raw_grade=3), "hard.operator_never_reads_raw"),
    ],
)
def test_hard_lines_deny_with_their_id(engine: Engine, actor: Actor, action: str, context: Context, rule: str) -> None:
    d = engine.authorize(actor, action, ds(grade=4), context)
    assert not d.allowed and rule in d.reasons


def test_closed_data_stays_with_its_owner(engine: Engine) -> None:
    closed = ds(ot="closed", st="closed")
    g = grant_for(HEALTH)
    assert "hard.closed_not_shared" in engine.authorize(HEALTH, "dataset:read_shared", closed, Context(grant=g)).reasons
    assert "hard.closed_not_shared" in engine.authorize(HEALTH, "request:create", closed).reasons
    assert "hard.closed_not_opened" in engine.authorize(ENTERPRISE, "request:create", closed).reasons
    assert "hard.closed_not_opened" in engine.authorize(Actor.public(), "dataset:read_open", closed).reasons
    assert engine.authorize(OWNER, "dataset:read_shared", closed, Context(raw_grade=3)).allowed


def test_grant_must_cover_org_dataset_and_columns(engine: Engine) -> None:
    r = ds()
    ok = Context(grant=grant_for(ENTERPRISE), columns={"name"}, at=NOW)
    assert engine.authorize(ENTERPRISE, "workspace:query", r, ok).allowed
    for bad in (
        Context(grant=grant_for(ENTERPRISE), columns={"name", "id_number"}, at=NOW),  # column outside the grant
        Context(grant=grant_for(ENTERPRISE, org="91510100-OTHER"), at=NOW),  # someone else's grant
        Context(grant=grant_for(ENTERPRISE, datasets={"pop-2"}), at=NOW),  # another dataset
        Context(grant=grant_for(ENTERPRISE, expires_at=NOW), at=NOW),  # expires this very second
        Context(grant=grant_for(ENTERPRISE, revoked=True), at=NOW),
    ):
        assert not engine.authorize(ENTERPRISE, "workspace:query", r, bad).allowed


def test_scenario_opens_sharing_only_for_participants_scope_and_purpose(engine: Engine) -> None:
    scn = "public_health_emergency"
    ctx = Context(purpose="epidemic_response", raw_grade=3)
    assert not engine.authorize(HEALTH, "dataset:read_shared", ds(), ctx).allowed
    d = engine.authorize(HEALTH, "dataset:read_shared", ds(), ctx, scenario=scn)
    assert d.allowed and d.scenario == scn and d.reasons == ("scenario.public_health_emergency.share_population",)
    assert engine.authorize(
        HEALTH, "dataset:read_shared", ds(), Context(purpose="epidemic_response", scenario=scn)
    ).allowed
    assert not engine.authorize(TAX, "dataset:read_shared", ds(), ctx, scenario=scn).allowed  # not a participant
    wrong_purpose = Context(purpose="marketing", raw_grade=3)
    assert not engine.authorize(HEALTH, "dataset:read_shared", ds(), wrong_purpose, scenario=scn).allowed
    other = ds(category="legal_person")
    assert not engine.authorize(HEALTH, "dataset:read_shared", other, ctx, scenario=scn).allowed  # out of scope
    assert not engine.authorize(
        HEALTH,
        "dataset:read_shared",
        ds(grade=4),
        Context(purpose="epidemic_response", raw_grade=4),
        scenario=scn,
    ).allowed


PERMIT_ALL = """id: open_everything
title: {zh: 全部放开, en: Everything open}
description: a hostile overlay that permits everything
participants: {roles: [], orgs: []}
datasets: {categories: [], codes: []}
default_duration_hours: 1
purposes: [any]
overlay: |
  @id("scenario.open_everything.all")
  permit (principal, action, resource);
"""


def test_an_overlay_cannot_relax_a_hard_line(policy_dir: Path) -> None:
    (policy_dir / "scenarios" / "open_everything.yaml").write_text(PERMIT_ALL, encoding="utf-8")
    e = Engine.load(policy_dir)
    scn = "open_everything"
    # The overlay does widen what the baseline permits...
    assert e.authorize(Actor.public(), "dataset:publish", ds(), scenario=scn).allowed
    # ...but every hard line still holds.
    cases = [
        (ENTERPRISE, "export:create", ds(grade=4), Context(raw_grade=4), "hard.g4_raw_never_leaves"),
        (OWNER, "dataset:read_shared", ds(grade=4), Context(raw_grade=4), "hard.g4_raw_never_leaves"),
        (OWNER, "request:approve", ds(), Context(requester="p-owner"), "hard.no_self_approval"),
        (OPERATOR, "workspace:query", ds(), Context(raw_grade=3), "hard.operator_never_reads_raw"),
        (HEALTH, "dataset:read_shared", ds(st="closed"), Context(), "hard.closed_not_shared"),
        (Actor.public(), "dataset:read_open", ds(ot="closed"), Context(), "hard.closed_not_opened"),
        (
            Actor.public(),
            "dataset:read_open",
            ds(ot="unconditional"),
            Context(raw_grade=3),
            "hard.open_edition_is_g1",
        ),
    ]
    for actor, action, resource, ctx, rule in cases:
        d = e.authorize(actor, action, resource, ctx, scenario=scn)
        assert not d.allowed and rule in d.reasons, (action, d)


def test_an_overlay_with_forbid_is_refused(policy_dir: Path) -> None:
    text = PERMIT_ALL.replace("permit (principal, action, resource);", "forbid (principal, action, resource);")
    (policy_dir / "scenarios" / "open_everything.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(Invalid, match="only add permit rules"):
        Engine.load(policy_dir)


def test_errors_are_loud_not_silent_denies(engine: Engine) -> None:
    with pytest.raises(KeyError, match="unregistered action"):
        engine.authorize(OWNER, "dataset:delete", ds())
    with pytest.raises(Invalid, match="applies to a Dataset"):
        engine.authorize(OWNER, "dataset:publish", Resource.organisation("510100-GA", "department"))
    with pytest.raises(Invalid, match="unknown scenario"):
        engine.authorize(OWNER, "dataset:publish", ds(), scenario="zombie_apocalypse")
    with pytest.raises(Invalid, match="unknown category"):
        engine.authorize(OWNER, "dataset:publish", ds(category="weather"))
    with pytest.raises(Invalid, match="core data is refused"):
        ds(grade=5)
    with pytest.raises(Invalid, match="raw_grade"):
        Context(raw_grade=7)


def test_every_registered_action_is_permitted_to_someone(engine: Engine) -> None:
    admin, auditor = Actor.system("t"), Actor("p-aud", "auditor", "510100-SJJ")
    resources = {
        "Dataset": ds(ot="unconditional"),
        "Organisation": Resource.organisation("91510100-ACME", "enterprise"),
        "AuditLog": Resource.audit_log(),
        "Scenario": Resource.scenario("natural_disaster"),
    }
    ctx = Context(grant=grant_for(ENTERPRISE), requester="p-x", requester_role="enterprise", raw_grade=1, at=NOW)
    for name, spec in actions.ACTIONS.items():
        who = [OWNER, HEALTH, ENTERPRISE, OPERATOR, admin, auditor, Actor.public()]
        assert any(engine.authorize(a, name, resources[spec.resource], ctx).allowed for a in who), name


def test_identity_audit_and_range_actions(engine: Engine) -> None:
    org = Resource.organisation("91510100-ACME", "enterprise")
    dept = Resource.organisation("510100-GA", "department")
    assert engine.authorize(Actor.system("cli"), "organisation:create", dept).allowed
    assert engine.authorize(OPERATOR, "enterprise:onboard", org).allowed
    assert not engine.authorize(OPERATOR, "principal:create", dept).allowed
    assert not engine.authorize(OWNER, "organisation:create", dept).allowed
    assert engine.authorize(OWNER, "token:revoke", dept).allowed  # its own organisation's tokens
    auditor = Actor("p-aud", "auditor", "510100-SJJ")
    assert engine.authorize(auditor, "audit:export", Resource.audit_log()).allowed
    assert not engine.authorize(ENTERPRISE, "audit:search", Resource.audit_log()).allowed
    assert engine.authorize(OPERATOR, "scenario:activate", Resource.scenario("natural_disaster")).allowed
    assert not engine.authorize(HEALTH, "scenario:activate", Resource.scenario("natural_disaster")).allowed


def test_policy_version_is_sm3_of_the_files_cross_checked(policy_dir: Path) -> None:
    blob = b""
    names = ["vocabulary.yaml", "schema.cedarschema", "access.cedar"]
    names += sorted(f"scenarios/{p.name}" for p in (policy_dir / "scenarios").glob("*.yaml"))
    for name in names:
        data = (policy_dir / name).read_bytes()
        blob += len(name).to_bytes(4, "big") + name.encode() + len(data).to_bytes(8, "big") + data
    assert version_of(policy_dir) == gmssl_sm3.sm3_hash(list(blob))
    before = version_of(policy_dir)
    (policy_dir / "access.cedar").write_text((policy_dir / "access.cedar").read_text() + "\n// note\n")
    assert version_of(policy_dir) != before


def test_reload_keeps_old_policies_when_a_file_is_broken(policy_dir: Path) -> None:
    e = Engine.load(policy_dir)
    old = e.policy_version
    cedar = policy_dir / "access.cedar"
    good = cedar.read_text()
    cedar.write_text(good.replace("principal.role", "principal.rol", 1))
    with pytest.raises(Invalid, match=r"access\.cedar:[0-9]+: .*rol"):
        e.reload()
    assert e.policy_version == old
    assert e.authorize(Actor.public(), "dataset:read_open", ds(ot="unconditional"), Context(raw_grade=1)).allowed
    cedar.write_text(good + "\n// reviewed\n")
    assert e.reload() != old and e.policy_version != old


def test_process_engine_is_replaceable() -> None:
    previous = get_engine()
    try:
        mine = Engine.load()
        set_engine(mine)
        assert get_engine() is mine
    finally:
        set_engine(previous)
