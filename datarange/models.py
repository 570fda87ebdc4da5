"""Data-range tables: scenario activations (windows in which an overlay is in force) and experiment runs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, Text
from sqlmodel import Field, SQLModel


class ScenarioActivation(SQLModel, table=True):
    """The operator switched `scenario` on for [starts_at, ends_at); `ended_at` set when switched off early.

    Whether it is in force is computed from the clock at each decision, never stored as a flag.
    """

    __tablename__ = "range_scenario_activation"
    __table_args__ = (Index("ix_range_activation_window", "starts_at", "ends_at"),)

    id: int | None = Field(default=None, primary_key=True)
    scenario: str = Field(max_length=64, index=True)
    starts_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    ends_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    ended_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    reason: str = Field(default="", max_length=500)
    activated_by: str = Field(max_length=200)
    ended_by: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class ExperimentRun(SQLModel, table=True):
    """One run of an experiment definition: its status, progress and (when done) its report."""

    __tablename__ = "range_experiment"

    id: str = Field(primary_key=True, max_length=40)
    name: str = Field(max_length=64)
    scenario: str = Field(max_length=64)
    status: str = Field(default="queued", max_length=16)  # queued | running | done | failed
    done_steps: int = 0
    total_steps: int = 0
    phase: str = Field(default="", max_length=200)
    definition: str = Field(sa_column=Column(Text, nullable=False))  # the YAML as submitted
    report: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    error: str | None = Field(default=None, max_length=2000)
    started_by: str = Field(max_length=200)
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    finished_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
