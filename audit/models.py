"""Audit tables: the append-only record, signed checkpoints, cached Merkle subtrees and risk alerts.

Every table is prefixed `audit_`. Records and checkpoints are never updated or deleted: there is no
code path for it and `audit.ddl.install_guards` makes the database refuse it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BigInteger, Column, DateTime, Index, Integer, Text
from sqlmodel import Field, SQLModel


class AuditRecord(SQLModel, table=True):
    """One decision or effect. `seq` runs 1, 2, 3 … without gaps; hashes are lowercase hex."""

    __tablename__ = "audit_record"
    __table_args__ = (
        Index("ix_audit_record_principal_seq", "principal", "seq"),
        Index("ix_audit_record_org_seq", "org", "seq"),
        Index("ix_audit_record_dataset_seq", "dataset", "seq"),
        Index("ix_audit_record_time", "time"),
    )

    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    time: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    principal: str = Field(max_length=200)
    org: str | None = Field(default=None, max_length=200)
    role: str = Field(max_length=32)
    action: str = Field(max_length=100, index=True)
    resource_type: str = Field(max_length=50)
    resource_id: str = Field(max_length=300)
    dataset: str | None = Field(default=None, max_length=200)
    dataset_version: int | None = None
    allowed: bool
    reasons: str = Field(default="[]", sa_column=Column(Text, nullable=False))  # canonical JSON list
    policy_version: str = Field(default="", max_length=100)
    scenario: str | None = Field(default=None, max_length=100)
    experiment: str | None = Field(default=None, max_length=100)
    purpose: str | None = Field(default=None, max_length=500)
    request_id: str | None = Field(default=None, max_length=100)
    client_addr: str | None = Field(default=None, max_length=100)
    outcome: str = Field(default="{}", sa_column=Column(Text, nullable=False))  # canonical JSON object
    leaf_hash: str = Field(max_length=64)
    chain_hash: str = Field(max_length=64)


class Checkpoint(SQLModel, table=True):
    """A signed tree head: the log's first `tree_size` records have Merkle root `root_hash`."""

    __tablename__ = "audit_checkpoint"

    id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    tree_size: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    root_hash: str = Field(max_length=64)
    chain_hash: str = Field(max_length=64)
    time: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    key_id: str = Field(max_length=100)
    prev_id: int = 0  # 0 for the first checkpoint
    prev_digest: str = Field(max_length=64)  # SM3 of the previous checkpoint's signed text
    signature: str = Field(sa_column=Column(Text, nullable=False))  # hex of the DER SM2 signature


class Subtree(SQLModel, table=True):
    """Cache of complete, aligned Merkle subtrees (2**level leaves from index << level): immutable facts."""

    __tablename__ = "audit_subtree"

    level: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    idx: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    hash: str = Field(max_length=64)


class Alert(SQLModel, table=True):
    """A raised risk alert; `key` makes re-evaluation idempotent (one alert per rule, subject, window)."""

    __tablename__ = "audit_alert"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=300, unique=True)
    rule: str = Field(max_length=50, index=True)
    severity: str = Field(max_length=20)
    time: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, index=True))
    principal: str | None = Field(default=None, max_length=200)
    org: str | None = Field(default=None, max_length=200)
    dataset: str | None = Field(default=None, max_length=200)
    detail: str = Field(max_length=1000)
    first_seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    last_seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    count: int = 0
    audit_seq: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """What `audit.record` wrote: the same fields as AuditRecord, as a plain read-only value.

    (Building an ORM instance per append cost more than the append itself.)
    """

    seq: int
    time: datetime
    principal: str
    org: str | None
    role: str
    action: str
    resource_type: str
    resource_id: str
    dataset: str | None
    dataset_version: int | None
    allowed: bool
    reasons: str
    policy_version: str
    scenario: str | None
    experiment: str | None
    purpose: str | None
    request_id: str | None
    client_addr: str | None
    outcome: str
    leaf_hash: str
    chain_hash: str
