"""The data range over HTTP: scenarios in force, experiments (started in the background), reports, what-if."""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any

from fastapi import APIRouter, status
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field, model_validator

from datarange import definition, scenarios, service, whatif
from gateway.db import unit_of_work
from gateway.deps import PrincipalCtxDep

router = APIRouter()
log = logging.getLogger(__name__)


class ActivateIn(BaseModel):
    starts_at: datetime | None = Field(default=None, description="default: now")
    ends_at: datetime | None = Field(default=None, description="default: start + the scenario's default duration")
    reason: str = Field(default="", max_length=500)


class DeactivateIn(BaseModel):
    reason: str = Field(default="", max_length=500)


class ExperimentIn(BaseModel):
    sample: str | None = Field(default=None, max_length=64, description="a packaged sample experiment by name")
    definition: str | None = Field(default=None, max_length=200_000, description="an experiment as YAML text")

    @model_validator(mode="after")
    def _one(self) -> ExperimentIn:
        if (self.sample is None) == (self.definition is None):
            raise ValueError("give either `sample` or `definition`")
        return self


class WhatIfIn(BaseModel):
    scenario: str = Field(max_length=64)
    since: datetime | None = None
    until: datetime | None = None
    experiment: str | None = Field(default=None, max_length=100)


@router.get("/scenarios")
def list_scenarios(c: PrincipalCtxDep) -> list[dict[str, Any]]:
    """Every scenario: participants, datasets in scope, purposes, default duration, windows, in force now."""
    with c.uow(read=True) as s:
        return scenarios.list_scenarios(s, actor=c.actor)


@router.post("/scenarios/{scenario_id}/activate", status_code=status.HTTP_201_CREATED)
def activate(scenario_id: str, body: ActivateIn, c: PrincipalCtxDep) -> dict[str, Any]:
    """Switch a scenario on for a window (operator, admin); it expires by itself."""
    with c.uow() as s:
        a = scenarios.activate(
            s, actor=c.actor, scenario_id=scenario_id, starts_at=body.starts_at, ends_at=body.ends_at,
            reason=body.reason,
        )  # fmt: skip
        return scenarios.window_out(a)


@router.post("/scenarios/{scenario_id}/deactivate")
def deactivate(scenario_id: str, body: DeactivateIn, c: PrincipalCtxDep) -> dict[str, Any]:
    """Switch a scenario off now."""
    with c.uow() as s:
        return scenarios.window_out(scenarios.deactivate(s, actor=c.actor, scenario_id=scenario_id, reason=body.reason))


@router.get("/experiments/samples")
def samples() -> list[str]:
    """Names of the packaged sample experiments."""
    return list(definition.samples())


@router.post("/experiments", status_code=status.HTTP_202_ACCEPTED)
def start(body: ExperimentIn, c: PrincipalCtxDep) -> dict[str, Any]:
    """Start an experiment (a sample by name or a YAML definition); it runs in the background."""
    text = definition.load_sample(body.sample) if body.sample else body.definition or ""
    with c.uow() as s:
        run = service.start(s, actor=c.actor, text=text)
        out = service.to_out(run)
    st = c.state

    def work() -> None:
        try:
            service.execute(
                lambda: unit_of_work(st.engine), out["id"], keyring=st.keyring, data_dir=st.data_dir,
                cursor_key=st.secret_key,
            )  # fmt: skip
        except Exception:  # recorded on the run as `failed` with its error
            log.exception("experiment %s failed", out["id"])

    threading.Thread(target=work, name=f"range-{out['id']}", daemon=True).start()
    return out


@router.get("/experiments")
def list_runs(c: PrincipalCtxDep) -> list[dict[str, Any]]:
    with c.uow(read=True) as s:
        return [service.to_out(r) for r in service.list_runs(s, actor=c.actor)]


@router.get("/experiments/{run_id}")
def get_run(run_id: str, c: PrincipalCtxDep) -> dict[str, Any]:
    """Status and progress of a run."""
    with c.uow(read=True) as s:
        return service.to_out(service.get(s, actor=c.actor, run_id=run_id))


@router.get("/experiments/{run_id}/report")
def report(run_id: str, c: PrincipalCtxDep) -> dict[str, Any]:
    """The finished run's report (409 while it runs)."""
    with c.uow(read=True) as s:
        return service.get_report(s, actor=c.actor, run_id=run_id)


@router.get("/experiments/{run_id}/report.html", response_class=HTMLResponse)
def report_html(run_id: str, c: PrincipalCtxDep) -> HTMLResponse:
    """The report as a self-contained HTML page with inline SVG charts."""
    from datarange.html import render

    with c.uow(read=True) as s:
        rep = service.get_report(s, actor=c.actor, run_id=run_id)
    return HTMLResponse(
        render(rep), headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"}
    )


@router.post("/whatif")
def what_if(body: WhatIfIn, c: PrincipalCtxDep) -> dict[str, Any]:
    """Replay a window of real audit records under the baseline and under a scenario; what differs and why."""
    with c.uow() as s:
        return whatif.replay_audit(
            s, actor=c.actor, scenario=body.scenario, since=body.since, until=body.until, experiment=body.experiment
        )
