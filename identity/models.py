"""Identity tables: organisations, principals, API tokens (stored only as SM3 hashes)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel

ORG_KINDS = ("department", "enterprise", "operator", "audit_office", "admin")


class Organisation(SQLModel, table=True):
    __tablename__ = "organisation"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(index=True, unique=True, max_length=64)
    name: str = Field(max_length=200)
    kind: str = Field(max_length=20)
    status: str = Field(default="active", max_length=20)
    # Enterprises register an SM2 public key (PEM); export packages are wrapped to it.
    sm2_public_key_pem: str | None = None
    created_at: datetime


class Principal(SQLModel, table=True):
    __tablename__ = "principal"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(index=True, unique=True, max_length=64)
    name: str = Field(max_length=200)
    role: str = Field(max_length=20)
    org_id: int | None = Field(default=None, foreign_key="organisation.id", index=True)
    status: str = Field(default="active", max_length=20)
    created_at: datetime


class ApiToken(SQLModel, table=True):
    __tablename__ = "api_token"
    __table_args__ = (UniqueConstraint("token_id"),)

    id: int | None = Field(default=None, primary_key=True)
    # Public half of the token, used to find the row; the secret half is only stored hashed.
    token_id: str = Field(max_length=32)
    secret_hash: str = Field(max_length=64)
    principal_id: int = Field(foreign_key="principal.id", index=True)
    scopes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
