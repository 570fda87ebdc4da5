"""Risk alerts (数据安全风险预警) computed from the log with thresholds the policies layer passes in.

Rules: volume spike per organisation per hour; repeated denials per principal within N minutes;
off-hours access (Asia/Shanghai) to data graded at or above G (the caller records `outcome["grade"]`);
queries close to output-control limits (the caller records `outcome["near_limit"] = true`).
Each new alert is stored once (a stable `key`) and recorded in the log as `alert:raise`.
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from collections.abc import Sequence
from datetime import datetime, time, timedelta
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlmodel import Session, col
from sqlmodel import select as model_select

from common import clock
from common.actor import Actor

from .log import lock, record
from .models import Alert, AuditRecord

_T = AuditRecord.__table__  # type: ignore[attr-defined]
ALERT_ACTION = "alert:raise"


class AlertRules(BaseModel):
    """Thresholds (held by the policies layer); None switches a rule off."""

    volume_per_org_per_hour: int | None = Field(default=1000, ge=1)
    denials_per_principal: int | None = Field(default=5, ge=1)
    denial_window_minutes: int = Field(default=10, ge=1)
    off_hours_start: time = time(22, 0)  # Asia/Shanghai
    off_hours_end: time = time(6, 0)
    off_hours_min_grade: str | None = "G3"
    near_limit_flag: str | None = "near_limit"


def _grade(value: object) -> int:
    if isinstance(value, str) and len(value) == 2 and value[0] in "Gg" and value[1].isdigit():
        return int(value[1])
    return 0


def _off_hours(local: datetime, rules: AlertRules) -> bool:
    t, start, end = local.time(), rules.off_hours_start, rules.off_hours_end
    return (t >= start or t < end) if start > end else (start <= t < end)


def _one_record(r: Any, key: str, rule: str, severity: str, detail: str) -> dict:
    """An alert raised by a single record."""
    return dict(
        key=key,
        rule=rule,
        severity=severity,
        principal=r.principal,
        org=r.org,
        dataset=r.dataset,
        first_seq=r.seq,
        last_seq=r.seq,
        count=1,
        detail=detail,
    )


def _candidates(records: Sequence[Any], rules: AlertRules) -> list[dict]:
    """Alerts implied by the records (dicts with key, rule, severity, subject fields, seq range, count)."""
    out: list[dict] = []
    if rules.volume_per_org_per_hour:
        hours: dict[tuple[str, datetime], list[int]] = defaultdict(list)
        for r in records:
            if r.org:
                hour = clock.as_utc(r.time).replace(minute=0, second=0, microsecond=0)
                hours[(r.org, hour)].append(r.seq)
        for (org, hour), seqs in hours.items():
            if len(seqs) > rules.volume_per_org_per_hour:
                out.append(
                    dict(
                        key=f"volume:{org}:{hour:%Y-%m-%dT%H}",
                        rule="volume_spike",
                        severity="medium",
                        org=org,
                        first_seq=seqs[0],
                        last_seq=seqs[-1],
                        count=len(seqs),
                        detail=f"{len(seqs)} records for {org} in the hour from "
                        f"{clock.local(hour):%Y-%m-%d %H:00} "
                        f"(Asia/Shanghai); threshold {rules.volume_per_org_per_hour}",
                    )
                )
    if rules.denials_per_principal:
        window = timedelta(minutes=rules.denial_window_minutes)
        recent: dict[str, deque] = defaultdict(deque)
        for r in records:
            if r.allowed:
                continue
            q = recent[r.principal]
            q.append(r)
            while clock.as_utc(r.time) - clock.as_utc(q[0].time) > window:
                q.popleft()
            if len(q) >= rules.denials_per_principal:
                out.append(
                    dict(
                        key=f"denials:{r.principal}:{q[0].seq}",
                        rule="repeated_denials",
                        severity="high",
                        principal=r.principal,
                        org=r.org,
                        first_seq=q[0].seq,
                        last_seq=r.seq,
                        count=len(q),
                        detail=f"{len(q)} denied requests by {r.principal} within "
                        f"{rules.denial_window_minutes} minutes",
                    )
                )
                q.clear()  # the next alert needs a fresh run of denials
    min_grade = _grade(rules.off_hours_min_grade)  # once, not per record
    for r in records:
        outcome = json.loads(r.outcome)
        local = clock.local(r.time)
        if r.allowed and min_grade and _grade(outcome.get("grade")) >= min_grade and _off_hours(local, rules):
            night = (local - timedelta(days=1)).date() if local.time() < rules.off_hours_end else local.date()
            out.append(
                _one_record(
                    r,
                    f"offhours:{r.principal}:{r.dataset}:{night}",
                    "off_hours_sensitive",
                    "medium",
                    f"{outcome.get('grade')} data read by {r.principal} at {local:%H:%M} (Asia/Shanghai)",
                )
            )
        if rules.near_limit_flag and outcome.get(rules.near_limit_flag):
            out.append(
                _one_record(
                    r,
                    f"nearlimit:{r.seq}",
                    "near_output_limit",
                    "low",
                    f"{r.action} by {r.principal} came close to an output-control limit",
                )
            )
    return out


def evaluate_alerts(session: Session, since: datetime, rules: AlertRules | dict | None = None) -> list[Alert]:
    """Raise the alerts implied by records since `since`; returns only the new ones (caller commits)."""
    rules = rules if isinstance(rules, AlertRules) else AlertRules.model_validate(rules or {})
    lock(session)  # one evaluator at a time, so an alert key is inserted once
    records = session.execute(
        select(_T).where(_T.c.time >= clock.as_utc(since), _T.c.action != ALERT_ACTION).order_by(_T.c.seq)
    ).all()
    found: dict[str, dict] = {}
    for c in _candidates(records, rules):
        found.setdefault(c["key"], c)  # the first record of a night (or window) names the alert
    if not found:
        return []
    known = set(session.exec(model_select(Alert.key).where(col(Alert.key).in_(list(found)))).all())
    system = Actor.system("alerts")
    new: list[Alert] = []
    for key, c in found.items():
        if key in known:
            continue
        entry = record(
            session,
            actor=system,
            action=ALERT_ACTION,
            resource_type="alert",
            resource_id=key[:300],
            allowed=True,
            reasons=[c["rule"]],
            dataset=c.get("dataset"),
            outcome={
                "rule": c["rule"],
                "count": c["count"],
                "first_seq": c["first_seq"],
                "last_seq": c["last_seq"],
                "severity": c["severity"],
            },
        )
        alert = Alert(time=clock.as_utc(clock.now()), audit_seq=entry.seq, **c)
        session.add(alert)
        new.append(alert)
    session.flush()
    return new


def list_alerts(
    session: Session, *, since: datetime | None = None, rule: str | None = None, limit: int = 100
) -> list[Alert]:
    """Alerts for auditors, newest first."""
    stmt = model_select(Alert)
    if since is not None:
        stmt = stmt.where(col(Alert.time) >= clock.as_utc(since))
    if rule is not None:
        stmt = stmt.where(Alert.rule == rule)
    return list(session.exec(stmt.order_by(col(Alert.id).desc()).limit(max(1, min(limit, 1000)))).all())
