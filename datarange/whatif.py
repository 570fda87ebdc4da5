"""What-if: decide the same requests under the baseline and under a scenario overlay; list what differs.

Two sources: an experiment's captured decisions (exact inputs, replayed at their own decision times), or a
window of real audit records (the decision-relevant fields each record keeps: principal role and org,
action, the dataset's attributes, purpose). Both sides of a comparison are decided from the same inputs,
so a difference is the overlay's doing; the reasons name the rules responsible.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from sqlmodel import Session

from audit.search import AuditQuery, search
from catalog.models import Dataset
from common.actor import ROLES, Actor
from common.errors import Invalid
from policies import resources
from policies.engine import Context, Engine, get_engine
from policies.guard import authorized

MAX_RECORDS = 20000


def compare(engine: Engine, items: list[tuple[Actor, str, Any, Context]], scenario: str) -> dict[str, Any]:
    """Decide each (actor, action, resource, context) with and without `scenario`; the differences."""
    diffs: list[dict[str, Any]] = []
    counts = {"decisions": 0, "baseline_allowed": 0, "scenario_allowed": 0}
    for actor, action, resource, ctx in items:
        ctx = dataclasses.replace(ctx, scenario=None)
        base = engine.authorize(actor, action, resource, ctx)
        over = engine.authorize(actor, action, resource, ctx, scenario=scenario)
        counts["decisions"] += 1
        counts["baseline_allowed"] += base.allowed
        counts["scenario_allowed"] += over.allowed
        if base.allowed != over.allowed:
            diffs.append(
                {
                    "principal": actor.principal,
                    "role": actor.role,
                    "org": actor.org,
                    "action": action,
                    "dataset": resource.id,
                    "purpose": ctx.purpose or None,
                    "baseline": {"allowed": base.allowed, "reasons": list(base.reasons)},
                    "scenario": {"allowed": over.allowed, "reasons": list(over.reasons)},
                }
            )
    return {"scenario": scenario, **counts, "differences": len(diffs), "differs": diffs}


def replay_audit(
    session: Session,
    *,
    actor: Actor,
    scenario: str,
    since: datetime | None = None,
    until: datetime | None = None,
    experiment: str | None = None,
    engine: Engine | None = None,
) -> dict[str, Any]:
    """Replay a window of real audit records about datasets under the baseline and under `scenario`."""
    eng = engine or get_engine()
    if scenario not in eng.scenarios:
        raise Invalid(f"unknown scenario {scenario!r}; one of {', '.join(sorted(eng.scenarios))}")
    with authorized(
        session, actor, "experiment:read", resources.scenario(scenario), resource_type="whatif", resource_id=scenario,
    ) as act:  # fmt: skip
        items, skipped, before = [], 0, None
        cache: dict[str, Any] = {}
        while len(items) + skipped < MAX_RECORDS:
            page = search(
                session, AuditQuery(since=since, until=until, experiment=experiment, before_seq=before, limit=500)
            )
            for r in page.items:
                res = _dataset(session, r.dataset, cache) if r.dataset else None
                if (
                    res is None
                    or r.role not in ROLES
                    or (r.resource_type == "dataset" and r.action == "dataset:register")
                ):
                    skipped += 1
                    continue
                who = Actor(principal=r.principal, role=r.role, org=r.org)
                items.append((who, r.action, res, Context(purpose=r.purpose or "", at=r.time)))
            if page.next_before_seq is None:
                break
            before = page.next_before_seq
        out = compare(eng, items, scenario)
        out["skipped"] = skipped
        act.outcome.update({"decisions": out["decisions"], "differences": out["differences"]})
        return out


def _dataset(session: Session, code: str, cache: dict[str, Any]) -> Any:
    if code not in cache:
        from sqlmodel import select

        ds = session.exec(select(Dataset).where(Dataset.code == code)).first()
        cache[code] = resources.dataset(ds) if ds is not None else None
    return cache[code]
