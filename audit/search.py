"""The auditor's search (filters + keyset paging, newest first) and aggregates (per dataset, org, day)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlmodel import Session

from common import clock
from common.errors import Invalid

from .models import AuditRecord

_T = AuditRecord.__table__  # type: ignore[attr-defined]
MAX_LIMIT = 1000


class AuditQuery(BaseModel):
    """Filters; every one is optional and they combine with AND. Times are UTC (aware or naive-as-UTC)."""

    principal: str | None = None
    org: str | None = None
    action: str | None = None
    dataset: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    allowed: bool | None = None
    scenario: str | None = None
    experiment: str | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
    before_seq: int | None = Field(default=None, description="keyset cursor: only records with seq < this")
    limit: int = Field(default=100, ge=1, le=MAX_LIMIT)


@dataclass(frozen=True)
class Page:
    items: list[AuditRecord]
    next_before_seq: int | None  # pass as before_seq for the next (older) page; None at the end


def _where(q: AuditQuery) -> list:
    conds = []
    for name in (
        "principal",
        "org",
        "action",
        "dataset",
        "resource_type",
        "resource_id",
        "allowed",
        "scenario",
        "experiment",
    ):
        value = getattr(q, name)
        if value is not None:
            conds.append(_T.c[name] == value)
    if q.since is not None:
        conds.append(_T.c.time >= clock.as_utc(q.since))
    if q.until is not None:
        conds.append(_T.c.time < clock.as_utc(q.until))
    if q.since is not None and q.until is not None and q.until <= q.since:
        raise Invalid("`until` must be after `since`")
    return conds


def search(session: Session, query: AuditQuery) -> Page:
    """One page of matching records, newest first; `next_before_seq` continues the walk."""
    conds = _where(query)
    if query.before_seq is not None:
        conds.append(_T.c.seq < query.before_seq)
    stmt = select(AuditRecord).where(*conds).order_by(_T.c.seq.desc()).limit(query.limit + 1)
    rows = list(session.execute(stmt).scalars())
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    return Page(rows, rows[-1].seq if more else None)


def count_by(session: Session, column: str, query: AuditQuery | None = None) -> dict[str, int]:
    """Number of matching records per value of `dataset`, `org`, `principal` or `action`."""
    if column not in ("dataset", "org", "principal", "action", "resource_type"):
        raise Invalid(f"cannot aggregate by {column!r}")
    q = query or AuditQuery()
    col = _T.c[column]
    stmt = select(col, func.count()).where(*_where(q), col.is_not(None)).group_by(col)
    return {str(k): int(n) for k, n in session.execute(stmt).all()}


def per_dataset(session: Session, query: AuditQuery | None = None) -> dict[str, int]:
    """Accesses per dataset code."""
    return count_by(session, "dataset", query)


def per_org(session: Session, query: AuditQuery | None = None) -> dict[str, int]:
    """Accesses per organisation (enterprise, department …)."""
    return count_by(session, "org", query)


def per_day(session: Session, query: AuditQuery | None = None) -> dict[date, int]:
    """Records per calendar day in Asia/Shanghai (UTC+8 all year: no daylight saving)."""
    q = query or AuditQuery()
    if session.get_bind().dialect.name == "postgresql":
        day = func.date(func.timezone("Asia/Shanghai", _T.c.time))
    else:  # SQLite stores naive UTC text
        day = func.date(_T.c.time, "+8 hours")
    stmt = select(day, func.count()).where(*_where(q)).group_by(day).order_by(day)
    out: dict[date, int] = {}
    for d, n in session.execute(stmt).all():
        out[d if isinstance(d, date) else date.fromisoformat(d)] = int(n)
    return out
