"""The decision matrix: role × action × grade × open type × share type × scenario × grant state × raw.

Expected answers come from `oracle()`, which restates the documented rules (docs/policies.md) plainly
without looking at the engine or the Cedar files.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from common.actor import Actor
from policies.engine import Context, Engine, Grant, Resource

NOW = datetime(2026, 5, 12, 6, 0, tzinfo=UTC)  # 14:00 in Asia/Shanghai
OWNER_ORG = "510100-GA"
ACTORS = {
    "public": Actor.public(),
    "department": Actor("p-dept", "department", "510100-WJW"),  # a public-health scenario participant
    "owner": Actor("p-owner", "department", OWNER_ORG),
    "operator": Actor("p-op", "operator", "510100-OPS"),
    "enterprise": Actor("p-ent", "enterprise", "91510100-ACME"),
    "auditor": Actor("p-aud", "auditor", "510100-SJJ"),
    "admin": Actor("p-admin", "admin", None),
}
DATASET_ACTIONS = [
    "dataset:register",
    "dataset:update",
    "dataset:publish",
    "dataset:read_metadata",
    "dataset:read_quality",
    "dataset:read_open",
    "dataset:read_shared",
    "request:create",
    "request:approve",
    "request:deny",
    "grant:revoke",
    "workspace:query",
    "export:create",
    "export:review",
    "export:download",
]
TYPES = ["unconditional", "conditional", "closed"]
GRANTS = ["none", "active", "expired", "revoked"]
SCENARIOS = [None, "public_health_emergency"]
LEAVES = {
    "dataset:read_open",
    "dataset:read_shared",
    "workspace:query",
    "export:create",
    "export:review",
    "export:download",
}
OPEN_CHANNEL = {"dataset:read_open", "request:create", "workspace:query", "export:create", "export:download"}
OPERATOR_READS = {"dataset:read_shared", "workspace:query", "export:review", "export:download"}


def oracle(who: str, action: str, grade: int, ot: str, st: str, scenario: str | None, grant: str, raw: bool) -> bool:
    """The rules in words, as code: hard lines first (nothing overrides them), then the permits."""
    role = ACTORS[who].role
    owner = who == "owner"
    raw_grade = grade if raw else 0
    active = grant == "active"
    # Hard lines.
    if raw_grade >= 4 and action in LEAVES:
        return False  # no G4 raw column ever leaves
    if action == "dataset:read_open" and raw_grade > 1:
        return False  # the open edition is G1
    if role == "operator" and raw_grade > 1 and action in OPERATOR_READS:
        return False  # the operator never reads raw data
    department_request = action == "request:create" and role == "department"
    if ot == "closed" and not owner and action in OPEN_CHANNEL and not department_request:
        return False  # closed data is not opened (a department's request goes the sharing way)
    if st == "closed" and not owner and (action == "dataset:read_shared" or department_request):
        return False  # closed data is not shared
    if action in ("dataset:read_metadata", "dataset:read_quality") and ot == "closed" and not owner:
        oversight = role in ("operator", "auditor", "admin")
        if not oversight and not (role == "department" and st != "closed"):
            return False  # a closed dataset is invisible to those who could never get at it
    # Permits.
    if action == "dataset:read_metadata":
        return True
    if action == "dataset:read_quality":
        return owner or role in ("operator", "auditor", "admin")
    if action in ("dataset:register", "dataset:update", "dataset:publish"):
        return owner
    if action == "dataset:read_open":
        return ot == "unconditional"
    if action == "dataset:read_shared":
        if role != "department":
            return False
        if owner or st == "unconditional" or (st == "conditional" and active):
            return True
        # Public-health overlay: participants, population data, an epidemic purpose, conditional sharing.
        return scenario == "public_health_emergency" and st == "conditional"
    if action == "request:create":
        if role == "department":
            return not owner and st == "conditional"
        return role == "enterprise" and ot != "closed"
    if action in ("request:approve", "request:deny"):
        return owner or role == "operator"  # the requester here is an enterprise from another org
    if action == "grant:revoke":
        return owner or role in ("operator", "admin")
    if action in ("workspace:query", "export:create", "export:download"):
        return role == "enterprise" and active
    if action == "export:review":
        return owner or role == "operator"
    raise AssertionError(action)


def dataset(grade: int, ot: str, st: str) -> Resource:
    """One dataset per attribute combination, so a batch shares entities without clashes."""
    code = f"pop-{grade}-{ot}-{st}"
    return Resource.dataset(code, category="population", grade=grade, open_type=ot, share_type=st, owner=OWNER_ORG)


def context(who: str, grade: int, grant: str, raw: bool, code: str = "pop-1") -> Context:
    actor = ACTORS[who]
    g = None
    if grant != "none":
        expires = NOW + (timedelta(days=1) if grant != "expired" else -timedelta(seconds=1))
        g = Grant(
            org=actor.org or "",
            datasets={code},
            purpose="epidemic_response",
            expires_at=expires,
            columns={"name", "id_number"},
            revoked=grant == "revoked",
        )
    return Context(
        grant=g,
        purpose="epidemic_response",
        columns={"name"},
        raw_grade=grade if raw else 0,
        requester="p-requester",
        requester_org="91510100-OTHER",
        requester_role="enterprise",
        at=NOW,
    )


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine.load()


# (grade, raw): raw output at G1, G3 and G4, and masked output of a G4 dataset. Raw G1 and masked
# output fall on the same side of every threshold, so these four cover the grade axis.
GRADES = [(1, True), (3, True), (4, True), (4, False)]


def test_matrix_matches_the_documented_rules(engine: Engine) -> None:
    cases = [
        (who, action, grade, ot, st, scn, grant, raw)
        for who, action, (grade, raw), ot, st, scn, grant in itertools.product(
            ACTORS, DATASET_ACTIONS, GRADES, TYPES, TYPES, SCENARIOS, GRANTS
        )
    ]
    mismatches = []
    for scenario in SCENARIOS:
        sub = [c for c in cases if c[5] == scenario]
        requests = [
            (ACTORS[who], action, ds := dataset(grade, ot, st), context(who, grade, grant, raw, ds.id))
            for who, action, grade, ot, st, _, grant, raw in sub
        ]
        for case, decision in zip(sub, engine.authorize_batch(requests, scenario=scenario), strict=True):
            assert decision.scenario == scenario and decision.errors == ()
            if decision.allowed != oracle(*case):
                mismatches.append((case, decision.reasons))
    assert len(cases) == 7 * 15 * 4 * 9 * 2 * 4
    assert mismatches == []


def test_batch_answers_equal_single_answers(engine: Engine) -> None:
    cases = list(itertools.product(ACTORS, DATASET_ACTIONS, (3, 4), ("conditional",), TYPES, ("active", "none")))
    reqs = [(ACTORS[w], a, ds := dataset(g, ot, st), context(w, g, gr, True, ds.id)) for w, a, g, ot, st, gr in cases]
    batch = engine.authorize_batch(reqs)
    single = [engine.authorize(*r) for r in reqs]
    assert batch == single
