"""Scenarios in force (应急场景生效): the operator switches an overlay on for a window or off early.

"In force" is computed from `common.clock` at every decision — no background flag — so a window expires by
itself. The decision point learns the scenario through `provider()`, which gateway/state.py registers with
`policies.guard.set_scenario_provider`; every decision then carries the scenario id into its audit record.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import event
from sqlmodel import Session, col, select

from common import clock
from common.actor import Actor
from common.errors import Conflict, Invalid, NotFound
from datarange.models import ScenarioActivation
from policies import resources
from policies.engine import get_engine
from policies.guard import authorized, set_scenario_provider

log = logging.getLogger(__name__)
MAX_WINDOW = timedelta(days=90)
CACHE_SECONDS = 2.0  # other replicas see a switch within this long; this one at once


@dataclass(frozen=True)
class RangeInfo:
    """What the decision point is told: the scenario in force, the experiment running, a range's own engine."""

    scenario: str | None = None
    experiment: str | None = None
    engine: Any = None


# Set by an experiment run (in its own thread) so its decisions use its pass's scenario and its engine.
RUN: contextvars.ContextVar[RangeInfo | None] = contextvars.ContextVar("pdg_range_run", default=None)


def _known(scenario_id: str) -> Any:
    scn = get_engine().scenarios.get(scenario_id)
    if scn is None:
        raise NotFound(f"no scenario {scenario_id!r}; one of {', '.join(sorted(get_engine().scenarios))}")
    return scn


def _end(a: ScenarioActivation) -> datetime:
    return clock.as_utc(a.ended_at) if a.ended_at is not None else clock.as_utc(a.ends_at)


def in_force(a: ScenarioActivation, at: datetime) -> bool:
    return clock.as_utc(a.starts_at) <= at < _end(a)


def active_scenario(session: Session, at: datetime | None = None) -> str | None:
    """The scenario in force at `at` (default: now), or None."""
    when = clock.as_utc(at) if at is not None else clock.now()
    for a in _current(session, when):
        if in_force(a, when):
            return a.scenario
    return None


def _current(session: Session, since: datetime) -> list[ScenarioActivation]:
    stmt = select(ScenarioActivation).where(col(ScenarioActivation.ends_at) > since)
    return [a for a in session.exec(stmt.order_by(col(ScenarioActivation.starts_at))) if _end(a) > since]


def activate(
    session: Session,
    *,
    actor: Actor,
    scenario_id: str,
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
    reason: str = "",
) -> ScenarioActivation:
    """Switch `scenario_id` on from `starts_at` (now) until `ends_at` (start + the scenario's default duration)."""
    with authorized(
        session,
        actor,
        "scenario:activate",
        resources.scenario(scenario_id),
        resource_type="scenario",
        resource_id=scenario_id,
    ) as act:
        scn = _known(scenario_id)
        now = clock.now()
        start = clock.as_utc(starts_at) if starts_at is not None else now
        end = clock.as_utc(ends_at) if ends_at is not None else start + timedelta(hours=scn.default_duration_hours)
        if end <= start or end <= now:
            raise Invalid("ends_at must be after starts_at and in the future")
        if end - start > MAX_WINDOW:
            raise Invalid(f"a scenario window may last at most {MAX_WINDOW.days} days")
        if len(reason) > 500:
            raise Invalid("reason: at most 500 characters")
        for other in _current(session, now):
            if clock.as_utc(other.starts_at) < end and start < _end(other):
                raise Conflict(
                    f"scenario {other.scenario!r} is switched on from {other.starts_at} to {_end(other)}; "
                    "one scenario at a time: switch it off first"
                )
        a = ScenarioActivation(
            scenario=scenario_id,
            starts_at=start,
            ends_at=end,
            reason=reason.strip(),
            activated_by=actor.principal,
            created_at=now,
        )
        session.add(a)
        session.flush()
        act.outcome.update({"activation": a.id, "starts_at": start.isoformat(), "ends_at": end.isoformat()})
        _refresh_after_commit(session)
        return a


def deactivate(session: Session, *, actor: Actor, scenario_id: str, reason: str = "") -> ScenarioActivation:
    """Switch `scenario_id` off now (a window not started yet is cancelled)."""
    with authorized(
        session,
        actor,
        "scenario:deactivate",
        resources.scenario(scenario_id),
        resource_type="scenario",
        resource_id=scenario_id,
    ) as act:
        _known(scenario_id)
        now = clock.now()
        mine = [a for a in _current(session, now) if a.scenario == scenario_id]
        if not mine:
            raise Conflict(f"scenario {scenario_id!r} is not switched on")
        a = mine[0]
        a.ended_at = max(now, clock.as_utc(a.starts_at))
        a.ended_by = actor.principal
        if reason:
            a.reason = (a.reason + " | off: " + reason.strip())[:500]
        session.add(a)
        act.outcome.update({"activation": a.id, "ended_at": a.ended_at.isoformat()})
        _refresh_after_commit(session)
        return a


def list_scenarios(session: Session, *, actor: Actor) -> list[dict[str, Any]]:
    """Every scenario with its participants, scope, purposes, default duration and current/next window."""
    with authorized(
        session, actor, "experiment:read", resources.scenario("all"), resource_type="scenario", resource_id="all"
    ) as act:
        now = clock.now()
        windows = _current(session, now)
        out = []
        for sid, scn in sorted(get_engine().scenarios.items()):
            mine = [a for a in windows if a.scenario == sid]
            out.append(
                {
                    "id": sid,
                    "title": scn.title.model_dump(),
                    "description": scn.description.strip(),
                    "participants": scn.participants.model_dump(),
                    "datasets": scn.datasets.model_dump(),
                    "purposes": list(scn.purposes),
                    "default_duration_hours": scn.default_duration_hours,
                    "in_force": any(in_force(a, now) for a in mine),
                    "windows": [window_out(a) for a in mine],
                }
            )
        act.outcome["scenarios"] = len(out)
        return out


def window_out(a: ScenarioActivation) -> dict[str, Any]:
    return {
        "activation": a.id,
        "scenario": a.scenario,
        "starts_at": clock.as_utc(a.starts_at).isoformat(),
        "ends_at": _end(a).isoformat(),
        "ended_early": a.ended_at is not None,
        "in_force": in_force(a, clock.now()),
        "reason": a.reason,
    }


class _Windows:
    """Activation windows cached for a moment; whether one is in force is decided from the clock each time."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.rows: list[tuple[str, datetime, datetime]] = []
        self.loaded = -1.0e9
        self.lock = threading.Lock()

    def load(self) -> None:
        # A raw DB-API read: on SQLite the gateway's sessions open with BEGIN IMMEDIATE, which would wait for
        # the very transaction that is asking; a plain SELECT in autocommit mode reads the last commit instead.
        conn = self.db.raw_connection()
        try:
            cur = conn.cursor()
            cur.execute(
                "SELECT scenario, starts_at, ends_at, ended_at FROM range_scenario_activation "
                "ORDER BY id DESC LIMIT 500"
            )
            rows = cur.fetchall()
            cur.close()
        except Exception as exc:  # e.g. before migrations ran: no table yet, so no scenario is in force
            log.warning("scenario windows unreadable: %s", exc)
            rows = []
        finally:
            conn.rollback()
            conn.close()
        out = []
        for sid, start, end, ended in rows:
            start, end = _dt(start), _dt(ended if ended is not None else end)
            out.append((sid, start, end))
        self.rows, self.loaded = out, time.monotonic()

    def at(self, when: datetime) -> str | None:
        with self.lock:
            if time.monotonic() - self.loaded > CACHE_SECONDS:
                self.load()
            rows = self.rows
        return next((sid for sid, start, end in rows if start <= when < end), None)


def _dt(value: Any) -> datetime:
    return clock.as_utc(value if isinstance(value, datetime) else datetime.fromisoformat(str(value)))


_WINDOWS: _Windows | None = None


def install(db: Any) -> None:
    """Serve `provider()` from this database and register it with the decision point (gateway/state.py)."""
    global _WINDOWS
    _WINDOWS = _Windows(db)
    set_scenario_provider(provider)


def invalidate() -> None:
    if _WINDOWS is not None:
        _WINDOWS.loaded = -1.0e9


def _refresh_after_commit(session: Session) -> None:
    event.listen(session, "after_commit", lambda _s: invalidate(), once=True)
    invalidate()


def provider() -> RangeInfo | None:
    """For the decision point: an experiment's own settings, else the scenario in force now."""
    run = RUN.get()
    if run is not None:
        return run
    if _WINDOWS is None:
        return None
    sid = _WINDOWS.at(clock.now())
    return RangeInfo(scenario=sid) if sid else None
