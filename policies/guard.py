"""Decide, act, audit: the one way services ask the decision point and log the answer.

    with authorized(session, actor, "dataset:publish", resource, context,
                    resource_type="dataset", resource_id=code) as act:
        ...do the effect...
        act.outcome["rows"] = n

An allowed action is recorded in the caller's transaction when the block ends, so the record commits
with the effect. A denial raises `Denied` before anything happens; an error inside the block is
re-raised. Either carries `audit_entry`, which the unit of work (gateway/db.py) records in a fresh
transaction after rolling the effect back, so refusals are logged and nothing half-done persists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import audit
from common.actor import Actor
from common.errors import Denied, DomainError
from policies.actions import spec

# Services note here every action they authorised, so a test can prove none skipped the guard.
_SEEN: set[str] | None = None
# The data range (datarange/) registers this at startup: () -> None, or an object with `scenario` (in force,
# used when the context names none), `experiment` (tag for the audit entry) and `engine` (a range's own).
_RANGE: Callable[[], Any] | None = None


def set_scenario_provider(fn: Callable[[], Any] | None) -> None:
    """Install (or clear with None) what tells every decision the scenario in force and experiment running."""
    global _RANGE
    _RANGE = fn


def _range() -> Any:
    return _RANGE() if _RANGE is not None else None


def _ask(engine: Any, requests: list[tuple[Any, ...]], info: Any) -> list[Any]:
    from policies.engine import get_engine

    eng = engine or getattr(info, "engine", None) or get_engine()
    sid = getattr(info, "scenario", None)
    if any(r[3] is not None and r[3].scenario is not None for r in requests):
        sid = None  # a context that names its scenario (e.g. a what-if replay) keeps it
    if len(requests) == 1:
        return [eng.authorize(*requests[0], scenario=sid)]
    return list(eng.authorize_batch(requests, scenario=sid))


@dataclass
class Act:
    """An allowed action in progress: the decision, and the outcome the service fills in."""

    decision: Any
    outcome: dict[str, Any] = field(default_factory=dict)
    resource_id: str | None = None
    dataset: str | None = None
    dataset_version: int | None = None


def _entry(
    actor: Actor,
    action: str,
    decision: Any,
    resource_type: str,
    resource_id: str | None,
    purpose: str | None,
    experiment: str | None,
    dataset: str | None,
) -> dict[str, Any]:
    return {
        "dataset": dataset,
        "actor": actor,
        "action": action,
        "resource_type": resource_type,
        "resource_id": resource_id or "-",
        "allowed": bool(decision.allowed),
        "reasons": tuple(decision.reasons),
        "policy_version": decision.policy_version,
        "scenario": decision.scenario,
        "experiment": experiment or getattr(_range(), "experiment", None),
        "purpose": purpose,
        "dataset_version": None,
    }


def decide(actor: Actor, action: str, resource: Any, context: Any = None, *, engine: Any = None) -> Any:
    """Ask the decision point without acting (e.g. to filter a listing); not audited by itself."""
    spec(action)  # unknown actions are a programming error, not a deny
    if _SEEN is not None:
        _SEEN.add(action)
    return _ask(engine, [(actor, action, resource, context)], _range())[0]


def denied_detail(action: str, decision: Any) -> str:
    reasons = ", ".join(decision.reasons) if decision.reasons else "no rule permits it"
    return f"not allowed to {action} ({reasons})"


@contextmanager
def authorized(
    session: Any,
    actor: Actor,
    action: str,
    resource: Any,
    context: Any = None,
    *,
    resource_type: str,
    resource_id: str | None = None,
    purpose: str | None = None,
    experiment: str | None = None,
    dataset: str | None = None,
    engine: Any = None,
) -> Iterator[Act]:
    """Authorise `action`, run the block, record the decision and its outcome in `session`."""
    decision, entry = _allowed_or_raise(
        actor, action, resource, context, engine, resource_type, resource_id, purpose, experiment, dataset
    )
    act = Act(decision=decision, resource_id=resource_id, dataset=dataset)
    try:
        yield act
    except DomainError as exc:
        _finish(entry, act)
        entry["outcome"] = {**act.outcome, "error": exc.type_slug}
        exc.audit_entry = entry  # type: ignore[attr-defined]
        raise
    _finish(entry, act)
    _record(session, {**entry, "outcome": act.outcome})


def _allowed_or_raise(
    actor: Actor,
    action: str,
    resource: Any,
    context: Any,
    engine: Any,
    resource_type: str,
    resource_id: str | None,
    purpose: str | None,
    experiment: str | None,
    dataset: str | None,
) -> tuple[Any, dict[str, Any]]:
    """The decision and its audit entry; a denial raises Denied carrying the entry for the unit of work."""
    decision = decide(actor, action, resource, context, engine=engine)
    entry = _entry(actor, action, decision, resource_type, resource_id, purpose, experiment, dataset)
    if not decision.allowed:
        exc = Denied(denied_detail(action, decision), decision=decision)
        exc.audit_entry = entry  # type: ignore[attr-defined]
        raise exc
    return decision, entry


def _record(session: Any, entry: dict[str, Any]) -> None:
    """In the caller's transaction; a read unit of work (no write lock) writes it right after its commit."""
    if session.info.get("read_only"):
        session.info.setdefault("pending_audit", []).append(entry)
    else:
        audit.record(session, **entry)


def _finish(entry: dict[str, Any], act: Act) -> None:
    entry["resource_id"] = act.resource_id or entry["resource_id"]
    entry["dataset"] = act.dataset or entry["dataset"]
    entry["dataset_version"] = act.dataset_version


def track_actions(seen: set[str] | None) -> None:
    """Tests: start (a set) or stop (None) collecting the actions services authorised."""
    global _SEEN
    _SEEN = seen


def allow_or_raise(
    actor: Actor,
    action: str,
    resource: Any,
    context: Any = None,
    *,
    resource_type: str,
    resource_id: str | None = None,
    dataset: str | None = None,
    purpose: str | None = None,
    engine: Any = None,
) -> dict[str, Any]:
    """Decide now and record later: for streamed reads whose outcome (rows, bytes) is known only at the end.

    Returns the pending audit entry for `record_entry`; a denial raises `Denied` (logged by the unit of work).
    """
    _, entry = _allowed_or_raise(
        actor, action, resource, context, engine, resource_type, resource_id, purpose, None, dataset
    )
    return entry


def record_entry(
    session: Any, entry: dict[str, Any], *, outcome: dict[str, Any], dataset_version: int | None = None
) -> None:
    """Write a pending entry from `allow_or_raise` with its final outcome."""
    _record(session, {**entry, "dataset_version": dataset_version, "outcome": outcome})


def decide_many(
    actor: Actor, action: str, resources: list[Any], context: Any = None, *, engine: Any = None
) -> list[Any]:
    """Decisions for many resources at once (filtering a listing); not audited one by one."""
    spec(action)
    if _SEEN is not None:
        _SEEN.add(action)
    return _ask(engine, [(actor, action, r, context) for r in resources], _range())
