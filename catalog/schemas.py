"""What callers send and get back for datasets (the HTTP and CLI shapes)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from catalog.fields import FieldSpec

Category = Literal["population", "legal_person", "geospatial", "certificate", "macro_economy", "thematic"]
OpenType = Literal["unconditional", "conditional", "closed"]
UpdateCycle = Literal["realtime", "daily", "weekly", "monthly", "quarterly", "yearly", "irregular"]


class DatasetCreate(BaseModel):
    """Register a dataset for the caller's own department."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=4, max_length=64, examples=["510100-RK-0001"])
    title: str = Field(min_length=1, max_length=200)
    title_en: str | None = Field(default=None, max_length=200)
    description: str = Field(default="", max_length=20_000)
    description_en: str | None = Field(default=None, max_length=20_000)
    category: Category
    keywords: list[str] = Field(default_factory=list, max_length=50)
    department: str | None = Field(
        default=None, max_length=200, description="provider name; default: the org's"
    )
    update_cycle: UpdateCycle = "irregular"
    open_type: OpenType
    share_type: OpenType
    licence: str = Field(default="CC-BY-4.0", max_length=100)
    temporal_coverage: str | None = Field(default=None, max_length=100)
    spatial_coverage: str | None = Field(default=None, max_length=100)
    contact: str | None = Field(default=None, max_length=200)
    fields: list[FieldSpec] = Field(min_length=1, max_length=1000)
    key: str | None = None
    expectations: dict[str, Any] | None = Field(
        default=None, description="a Great Expectations suite (JSON) of declared expectations"
    )


class DatasetUpdate(BaseModel):
    """Change metadata (not fields: a new schema is a new dataset)."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, min_length=1, max_length=200)
    title_en: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=20_000)
    description_en: str | None = Field(default=None, max_length=20_000)
    keywords: list[str] | None = Field(default=None, max_length=50)
    update_cycle: UpdateCycle | None = None
    open_type: OpenType | None = None
    share_type: OpenType | None = None
    licence: str | None = Field(default=None, max_length=100)
    temporal_coverage: str | None = Field(default=None, max_length=100)
    spatial_coverage: str | None = Field(default=None, max_length=100)
    contact: str | None = Field(default=None, max_length=200)
    expectations: dict[str, Any] | None = None


class VersionOut(BaseModel):
    number: int
    rows: int
    bytes: int
    content_digest: str
    encrypted: bool
    source_format: str
    encoding: str | None
    open_rows: int | None
    quality_score: float | None
    published_by: str
    created_at: datetime


class DatasetOut(BaseModel):
    code: str
    title: str
    title_en: str | None
    description: str
    description_en: str | None
    category: str
    keywords: list[str]
    owner_org: str
    department: str
    update_cycle: str
    open_type: str
    share_type: str
    licence: str
    temporal_coverage: str | None
    spatial_coverage: str | None
    contact: str | None
    grade: str
    grade_reasons: list[str]
    current_version: int | None
    quality_score: float | None
    fields: list[dict[str, Any]]
    key: str | None
    created_at: datetime
    updated_at: datetime
    access: str = Field(description="how to get the rows: open, apply (sandbox/sharing), or owner-only")
