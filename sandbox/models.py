"""Sandbox tables: access requests and their decisions, grants, queries and export packages."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, LargeBinary, Text
from sqlmodel import Field, SQLModel

REQUEST_KINDS = ("sandbox", "share")
# submitted -> dept_approved (every owning department) -> active (operator, for enterprises) | denied | revoked.
# "expired" is shown for an active request whose grant has run out (computed from the clock, not stored).
REQUEST_STATES = ("submitted", "dept_approved", "active", "denied", "revoked")
QUERY_STATES = ("running", "released", "refused", "failed", "denied")
EXPORT_STATES = ("pending_review", "released", "refused")


class AccessRequest(SQLModel, table=True):
    """A request for sandbox access (enterprise) or sharing (department), with every decision on it."""

    __tablename__ = "sandbox_request"

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=10)
    requester: str = Field(index=True, max_length=64)  # principal code
    requester_org: str = Field(index=True, max_length=64)
    requester_role: str = Field(max_length=20)
    datasets: list[str] = Field(sa_column=Column(JSON, nullable=False))
    columns: list[str] = Field(sa_column=Column(JSON, nullable=False))  # "<dataset code>.<column>"
    owners: list[str] = Field(sa_column=Column(JSON, nullable=False))  # departments that must approve
    purpose: str = Field(max_length=64)
    purpose_text: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    duration_days: int
    intended_outputs: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    state: str = Field(index=True, max_length=20)
    # [{"by", "org", "role", "decision": approve|deny|revoke, "reason", "at"}], oldest first
    decisions: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    grant_id: int | None = None
    created_at: datetime
    updated_at: datetime


class Grant(SQLModel, table=True):
    """What an approval gave: who, which datasets and columns, for what purpose, until when."""

    __tablename__ = "sandbox_grant"

    id: int | None = Field(default=None, primary_key=True)
    request_id: int | None = Field(default=None, foreign_key="sandbox_request.id", index=True)
    kind: str = Field(max_length=10)
    org: str = Field(index=True, max_length=64)
    requester: str = Field(max_length=64)
    datasets: list[str] = Field(sa_column=Column(JSON, nullable=False))
    columns: list[str] = Field(sa_column=Column(JSON, nullable=False))
    purpose: str = Field(max_length=64)
    starts_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None
    revoked_by: str | None = Field(default=None, max_length=64)
    revoke_reason: str | None = Field(default=None, max_length=500)
    # 16 random bytes sealed by the gateway KEK: the key of this grant's pseudonyms (unlinkable across grants).
    pseudonym_key: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    budget: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime


class Query(SQLModel, table=True):
    """One sandbox query: what it read, what output control decided, and the released result."""

    __tablename__ = "sandbox_query"

    id: int | None = Field(default=None, primary_key=True)
    grant_id: int = Field(foreign_key="sandbox_grant.id", index=True)
    principal: str = Field(max_length=64)
    org: str = Field(max_length=64)
    sql_text: str = Field(sa_column=Column(Text, nullable=False))
    sql_digest: str = Field(max_length=64)
    tables: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    columns: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    versions: dict[str, int] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    rows_scanned: int | None = None
    rows_returned: int | None = None
    status: str = Field(index=True, max_length=20)
    decision: str | None = Field(default=None, max_length=20)  # released | refused (output control)
    reasons: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    output_grade: int = 0  # highest grade of the released columns' sources (aggregates count 0)
    # The released (output-controlled) result: {"columns": [...], "rows": [[...], ...]}; bounded by the budget.
    result: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    elapsed_ms: float | None = None
    created_at: datetime
    finished_at: datetime | None = None


class Export(SQLModel, table=True):
    """A sealed package of a released query result, and its review state."""

    __tablename__ = "sandbox_export"

    id: int | None = Field(default=None, primary_key=True)
    query_id: int = Field(foreign_key="sandbox_query.id", index=True)
    grant_id: int = Field(foreign_key="sandbox_grant.id", index=True)
    requested_by: str = Field(max_length=64)
    org: str = Field(max_length=64)
    format: str = Field(max_length=10)
    package_id: str = Field(max_length=32)
    path: str = Field(max_length=500)  # relative to the data directory
    digest: str = Field(max_length=64)  # SM3 of the whole package file
    size: int
    rows: int
    cells: int
    state: str = Field(index=True, max_length=20)
    reviewer: str | None = Field(default=None, max_length=64)
    review_reason: str | None = Field(default=None, max_length=500)
    created_at: datetime
    reviewed_at: datetime | None = None
