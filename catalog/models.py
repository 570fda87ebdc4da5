"""Catalog tables: datasets (metadata, schema, grade) and their immutable versions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


class Dataset(SQLModel, table=True):
    __tablename__ = "catalog_dataset"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(index=True, unique=True, max_length=64)
    title: str = Field(max_length=200)
    title_en: str | None = Field(default=None, max_length=200)
    description: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    description_en: str | None = Field(default=None, sa_column=Column(Text))
    category: str = Field(index=True, max_length=40)
    keywords: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    owner_org: str = Field(index=True, max_length=64)
    department: str = Field(max_length=200)
    update_cycle: str = Field(max_length=20)
    open_type: str = Field(index=True, max_length=20)
    share_type: str = Field(max_length=20)
    licence: str = Field(max_length=100)
    temporal_coverage: str | None = Field(default=None, max_length=100)
    spatial_coverage: str | None = Field(default=None, max_length=100)
    contact: str | None = Field(default=None, max_length=200)
    schema_def: dict[str, Any] = Field(sa_column=Column("schema", JSON, nullable=False))
    suite_json: dict[str, Any] | None = Field(default=None, sa_column=Column("suite", JSON))
    grade: str = Field(index=True, max_length=8)
    grade_reasons: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    current_version: int | None = None
    quality_score: float | None = None
    # Lower-cased concatenation of titles, descriptions, keywords and field labels for search.
    search_text: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    created_at: datetime
    updated_at: datetime


class DatasetVersion(SQLModel, table=True):
    """One published version. Immutable: rows are only ever inserted."""

    __tablename__ = "catalog_version"
    __table_args__ = (UniqueConstraint("dataset_id", "number"),)

    id: int | None = Field(default=None, primary_key=True)
    dataset_id: int = Field(foreign_key="catalog_dataset.id", index=True)
    number: int
    rows: int
    bytes: int
    content_digest: str = Field(max_length=64)  # SM3 of the stored (plaintext) Parquet
    encrypted: bool = False
    source_format: str = Field(max_length=10)
    encoding: str | None = Field(default=None, max_length=20)
    open_rows: int | None = None
    open_digest: str | None = Field(default=None, max_length=64)
    quality_score: float | None = None
    quality: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    conformance: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    published_by: str = Field(max_length=64)
    created_at: datetime
