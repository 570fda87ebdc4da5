"""Scenarios in force: switched on for a window, off early, expiring by the clock; decisions carry the id."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from common import clock
from common.actor import Actor
from common.errors import Conflict, Denied, Invalid
from datarange import scenarios
from gateway.db import unit_of_work
from policies import resources
from policies.engine import Context, get_engine
from policies.guard import authorized, decide
from tests.conftest import audit_rows

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
WJW = Actor("u-wjw", "department", org="510100-WJW")  # a public-health participant
POP = resources.dataset_attrs(
    code="510100-RK-0001", owner="510100-GA", category="population", grade=3, open_type="conditional",
    share_type="conditional",
)  # fmt: skip


@pytest.fixture
def at(state):
    now = [T0]
    clock.set_clock(lambda: now[0])
    scenarios.invalidate()
    yield now
    clock.set_clock(None)


def _activate(engine, who, sid="public_health_emergency", **kw):
    with unit_of_work(engine) as s:
        return scenarios.activate(s, actor=who.actor, scenario_id=sid, **kw)


def _emergency_read(engine):
    """What a participant's emergency read decides now, recorded like any service decision."""
    with unit_of_work(engine) as s, authorized(
        s, WJW, "dataset:read_shared", POP, Context(purpose="epidemic_response"),
        resource_type="share", resource_id=POP.id, dataset=POP.id,
    ) as act:  # fmt: skip
        act.outcome["probe"] = True


def test_overlay_expires_on_time_with_default_duration(engine, make_principal, at):
    op = make_principal("operator", org="OPERATOR-1")
    a = _activate(engine, op)
    assert clock.as_utc(a.ends_at) == T0 + timedelta(hours=336)  # the scenario file's default duration
    assert decide(WJW, "dataset:read_shared", POP, Context(purpose="epidemic_response")).allowed
    at[0] = T0 + timedelta(hours=336) - timedelta(seconds=1)
    with unit_of_work(engine) as s:
        assert scenarios.active_scenario(s) == "public_health_emergency"
    assert decide(WJW, "dataset:read_shared", POP, Context(purpose="epidemic_response")).scenario
    at[0] = T0 + timedelta(hours=336)  # the end is exclusive: over, with no one switching it off
    with unit_of_work(engine) as s:
        assert scenarios.active_scenario(s) is None
    d = decide(WJW, "dataset:read_shared", POP, Context(purpose="epidemic_response"))
    assert not d.allowed and d.scenario is None


def test_decisions_under_a_scenario_carry_its_id(engine, make_principal, at):
    op = make_principal("operator", org="OPERATOR-1")
    with pytest.raises(Denied):
        _emergency_read(engine)  # baseline: no grant, so no
    _activate(engine, op, ends_at=T0 + timedelta(hours=2))
    _emergency_read(engine)
    at[0] = T0 + timedelta(hours=3)
    with pytest.raises(Denied):
        _emergency_read(engine)
    rows = audit_rows(engine, action="dataset:read_shared")
    assert [(r.allowed, r.scenario) for r in rows] == [
        (False, None), (True, "public_health_emergency"), (False, None)
    ]  # fmt: skip
    assert rows[1].reasons == ["scenario.public_health_emergency.share_population"]
    act = audit_rows(engine, action="scenario:activate")
    assert act[0].allowed and act[0].outcome["ends_at"].startswith("2026-03-02T03:00")


def test_switch_off_early_and_one_at_a_time(engine, make_principal, at):
    op = make_principal("operator", org="OPERATOR-1")
    _activate(engine, op, ends_at=T0 + timedelta(hours=5))
    with pytest.raises(Conflict):
        _activate(engine, op, sid="natural_disaster")
    at[0] = T0 + timedelta(hours=1)
    with unit_of_work(engine) as s:
        scenarios.deactivate(s, actor=op.actor, scenario_id="public_health_emergency", reason="over")
    with unit_of_work(engine) as s:
        assert scenarios.active_scenario(s) is None
        assert scenarios.active_scenario(s, at=T0 + timedelta(minutes=30)) == "public_health_emergency"
    assert decide(WJW, "dataset:read_shared", POP, Context(purpose="epidemic_response")).scenario is None
    with pytest.raises(Conflict), unit_of_work(engine) as s:
        scenarios.deactivate(s, actor=op.actor, scenario_id="public_health_emergency")
    _activate(engine, op, sid="natural_disaster")  # the slot is free again


def test_only_operators_switch_and_windows_are_checked(engine, make_principal, at):
    dept = make_principal("department", org="510100-WJW")
    op = make_principal("operator", org="OPERATOR-1")
    with pytest.raises(Denied):
        _activate(engine, dept)
    with pytest.raises(Invalid):
        _activate(engine, op, ends_at=T0 - timedelta(hours=1))
    with pytest.raises(Invalid):
        _activate(engine, op, ends_at=T0 + timedelta(days=91))
    rows = audit_rows(engine, action="scenario:activate")
    assert [r.allowed for r in rows] == [False, True, True]  # allowed, then refused by validation
    assert all("error" in r.outcome for r in rows[1:])
    with unit_of_work(engine) as s:
        assert scenarios.active_scenario(s) is None


@pytest.mark.parametrize("sid", sorted(get_engine().scenarios))
def test_no_scenario_relaxes_a_hard_forbid(sid, at):
    """Every overlay is tried against the hard lines, with actors that are its own participants."""
    scn = get_engine().scenarios[sid]
    org = scn.participants.orgs[0]
    cat = scn.datasets.categories[0]
    g4 = resources.dataset_attrs(
        code="X-G4", owner="OTHER", category=cat, grade=4, open_type="conditional", share_type="conditional"
    )
    dept = Actor("u1", "department", org=org)
    ent = Actor("u2", "enterprise", org=org)
    op = Actor("u3", "operator", org=org)
    purpose = scn.purposes[0]
    raw4 = Context(purpose=purpose, raw_grade=4)
    raw3 = Context(purpose=purpose, raw_grade=3)
    eng = get_engine()
    cases = [
        (dept, "dataset:read_shared", g4, raw4, "hard.g4_raw_never_leaves"),
        (ent, "export:create", g4, raw4, "hard.g4_raw_never_leaves"),
        (ent, "export:download", g4, raw4, "hard.g4_raw_never_leaves"),
        (ent, "workspace:query", g4, raw4, "hard.g4_raw_never_leaves"),
        (op, "dataset:read_shared", g4, raw3, "hard.operator_never_reads_raw"),
        (op, "workspace:query", g4, raw3, "hard.operator_never_reads_raw"),
        (dept, "dataset:read_open", g4, raw3, "hard.open_edition_is_g1"),
    ]
    for actor, action, res, ctx, rule in cases:
        d = eng.authorize(actor, action, res, ctx, scenario=sid)
        assert not d.allowed and rule in d.reasons, (sid, action, d)
    # the same request at G3, masked, is what the overlay does widen: proof the overlay was in play
    g3 = resources.dataset_attrs(
        code="X-G3", owner="OTHER", category=cat, grade=3, open_type="conditional", share_type="conditional"
    )
    assert eng.authorize(dept, "dataset:read_shared", g3, Context(purpose=purpose), scenario=sid).allowed
