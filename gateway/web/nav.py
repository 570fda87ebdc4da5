"""What each signed-in user is shown: navigation decided by the decision point, not by guesses."""

from __future__ import annotations

from typing import Any

from common.actor import Actor
from policies import resources
from policies.guard import decide


def can(actor: Actor, action: str, resource: Any, context: Any = None) -> bool:
    """Would the decision point allow this? (Not audited: nothing is read or changed by asking.)"""
    try:
        return bool(decide(actor, action, resource, context).allowed)
    except Exception:  # a resource the engine cannot describe is simply not offered
        return False


def _new_dataset(actor: Actor) -> Any:
    return resources.dataset_attrs(
        code="new", owner=actor.org or "-", category="thematic", grade=1, open_type="closed", share_type="closed"
    )


def items(actor: Actor) -> list[tuple[str, str]]:
    """(href, i18n key) of the pages this actor may use, in menu order."""
    out = [("/", "nav.catalog")]
    if actor.role == "public":
        return out
    if actor.role == "department" and can(actor, "dataset:register", _new_dataset(actor)):
        out += [("/my/datasets", "nav.my_datasets"), ("/datasets/new", "nav.register")]
    if actor.role in ("department", "operator"):
        out.append(("/requests", "nav.approvals"))
    if actor.role == "enterprise":
        out += [("/requests", "nav.my_requests"), ("/exports", "nav.exports")]
    if actor.role == "operator":
        if can(actor, "enterprise:onboard", resources.organisation("new", "enterprise")):
            out.append(("/enterprises", "nav.enterprises"))
        out.append(("/exports", "nav.export_review"))
        if can(actor, "experiment:read", resources.scenario("any")):
            out += [("/range/scenarios", "nav.scenarios"), ("/range/experiments", "nav.experiments")]
    if can(actor, "audit:search", resources.audit_log()):
        out.append(("/audit", "nav.audit"))
    if can(actor, "alert:read", resources.audit_log()):
        out.append(("/audit/alerts", "nav.alerts"))
    if can(actor, "audit:search", resources.audit_log()):
        out.append(("/audit/verify", "nav.verify"))
    return out
