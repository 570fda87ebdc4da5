"""Experiments: start one (authorised, stored), execute it pass by pass in an isolated range, fetch its report.

run = start(session, actor=operator, text=yaml_text)            # experiment:run, status queued
execute(uow, run.id, keyring=, data_dir=, cursor_key=, progress=)  # baseline pass, scenario pass, report
get(session, actor=, run_id=) · report(session, actor=, run_id=)   # experiment:read
"""

from __future__ import annotations

import secrets
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from common import clock
from common.actor import Actor
from common.errors import Conflict, DomainError, Invalid, NotFound
from datarange import definition, report, tasks, whatif
from datarange.isolation import PASSES, Pass, Recording, range_engine
from datarange.models import ExperimentRun
from datarange.scenarios import RUN, RangeInfo
from policies import resources
from policies.engine import get_engine
from policies.guard import authorized
from sandbox import queries

Progress = Callable[[str, int, int], None]
MAX_TEXT = 200_000


def start(session: Session, *, actor: Actor, text: str) -> ExperimentRun:
    """Validate an experiment definition and queue a run of it; the run's id tags every record it makes."""
    if len(text) > MAX_TEXT:
        raise Invalid(f"an experiment definition is at most {MAX_TEXT} characters")
    exp = definition.parse(text)
    with authorized(
        session, actor, "experiment:run", resources.scenario(exp.scenario),
        resource_type="experiment", resource_id=exp.name,
    ) as act:  # fmt: skip
        if exp.scenario not in get_engine().scenarios:
            raise Invalid(f"unknown scenario {exp.scenario!r}; one of {', '.join(sorted(get_engine().scenarios))}")
        run = ExperimentRun(
            id=f"{exp.name}-{secrets.token_hex(3)}",
            name=exp.name,
            scenario=exp.scenario,
            total_steps=2 * (len(exp.participants) + len(exp.datasets) + len(exp.tasks)) + 2,
            definition=text,
            started_by=actor.principal,
            created_at=clock.now(),
        )
        session.add(run)
        session.flush()
        act.resource_id = run.id
        act.outcome.update({"experiment": run.id, "scenario": exp.scenario, "tasks": len(exp.tasks)})
        return run


def _get(session: Session, run_id: str) -> ExperimentRun:
    run = session.get(ExperimentRun, run_id)
    if run is None:
        raise NotFound(f"no experiment run {run_id!r}")
    return run


def get(session: Session, *, actor: Actor, run_id: str) -> ExperimentRun:
    """A run's status and progress."""
    run = _get(session, run_id)
    with authorized(
        session, actor, "experiment:read", resources.scenario(run.scenario),
        resource_type="experiment", resource_id=run_id,
    ):  # fmt: skip
        return run


def get_report(session: Session, *, actor: Actor, run_id: str) -> dict[str, Any]:
    """A finished run's report (Conflict while it runs)."""
    run = get(session, actor=actor, run_id=run_id)
    if run.report is None:
        raise Conflict(f"experiment {run_id} is {run.status}; its report is ready when it is done")
    return run.report


def list_runs(session: Session, *, actor: Actor, limit: int = 50) -> list[ExperimentRun]:
    with authorized(
        session, actor, "experiment:read", resources.scenario("all"), resource_type="experiment", resource_id="list"
    ):
        stmt = select(ExperimentRun).order_by(col(ExperimentRun.created_at).desc()).limit(limit)
        return list(session.exec(stmt))


def to_out(run: ExperimentRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "name": run.name,
        "scenario": run.scenario,
        "status": run.status,
        "phase": run.phase,
        "done_steps": run.done_steps,
        "total_steps": run.total_steps,
        "error": run.error,
        "started_by": run.started_by,
        "created_at": run.created_at,
        "finished_at": run.finished_at,
        "report_ready": run.report is not None,
    }


def execute(
    uow: Any, run_id: str, *, keyring: Any, data_dir: Path, cursor_key: bytes, out_dir: Path | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Run both passes and build the report; the run's row follows progress, and ends done or failed."""
    with uow() as s:
        run = _get(s, run_id)
        if run.status != "queued":
            raise Conflict(f"experiment {run_id} is {run.status}")
        run.status = "running"
        text, total = run.definition, run.total_steps
    step = [0]

    def tick(phase: str) -> None:
        step[0] += 1
        with uow() as s:
            r = _get(s, run_id)
            r.done_steps, r.phase = min(step[0], total), phase[:200]
        if progress:
            progress(phase, step[0], total)

    try:
        exp = definition.parse(text)
        if any(t.kind == "query" for t in exp.tasks):
            queries.default_runner().warm_up()  # a cold worker start would count against the first query's limit
        rep = _run(uow, run_id, exp, keyring=keyring, data_dir=data_dir, cursor_key=cursor_key, tick=tick)
        out = out_dir or data_dir / "range" / run_id
        out.mkdir(parents=True, exist_ok=True)
        tick("proof bundle")
        rep["proof"] = report.proof_bundle(uow, run_id, keyring=keyring, out_dir=out)
        with uow() as s:
            rep["decisions"] = report.decisions(report.experiment_records(s, run_id), rep.pop("_passes"))
        report.write(rep, out)
        rep["files"] = str(out)
    except Exception as exc:
        detail = exc.detail if isinstance(exc, DomainError) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, DomainError):
            traceback.print_exc()
        with uow() as s:
            r = _get(s, run_id)
            r.status, r.error, r.finished_at = "failed", detail[:2000], clock.now()
        raise
    with uow() as s:
        r = _get(s, run_id)
        r.status, r.report, r.finished_at, r.done_steps = "done", rep, clock.now(), total
    return rep


def _run(uow: Any, run_id: str, exp: Any, *, keyring: Any, data_dir: Path, cursor_key: bytes, tick: Any) -> dict:
    engine = Recording(range_engine(get_engine(), run_id))
    passes: dict[str, Pass] = {}
    for name in PASSES:
        p = Pass(run_id=run_id, name=name, scenario=exp.scenario if name == "scenario" else None)
        passes[name] = p
        token = RUN.set(RangeInfo(scenario=p.scenario, experiment=run_id, engine=engine))
        try:
            tick(f"{name}: setting up the range")
            tasks.setup(uow, p, exp, keyring=keyring, data_dir=data_dir)
            step_setup = len(exp.participants) + len(exp.datasets) - 1
            for _ in range(step_setup):
                tick(f"{name}: range ready")
            p.started = clock.now()
            for t in exp.tasks:
                p.results.append(tasks.run_task(uow, p, t, keyring=keyring, data_dir=data_dir, cursor_key=cursor_key))
                tick(f"{name}: {t.id} ({t.kind})")
        finally:
            RUN.reset(token)
    items = [(c.actor, c.action, c.resource, c.context) for c in engine.captured]
    replay = whatif.compare(engine.inner, items, exp.scenario)
    for d in replay["differs"]:
        for p in passes.values():
            if d["org"] and d["org"].startswith(p.prefix):
                d["pass"], d["org"], d["dataset"] = p.name, p.local(d["org"]), p.local(d["dataset"])
    with uow() as s:
        qm = {name: report.quality_and_masking(s, p) for name, p in passes.items()}
    return {
        "experiment": run_id,
        "name": exp.name,
        "title": exp.title,
        "scenario": exp.scenario,
        "policy_version": get_engine().policy_version,
        "range_policy_version": engine.inner.policy_version,
        "tasks": {name: p.results for name, p in passes.items()},
        "expectations": {
            name: {
                "checked": sum("expected" in r for r in p.results),
                "failed": [r["task"] for r in p.results if r.get("as_expected") is False],
            }
            for name, p in passes.items()
        },
        "differences": _differences(passes),
        "time_to_data": {name: report.time_to_data(p) for name, p in passes.items()},
        "quality": qm["baseline"][0],
        "masking": qm["baseline"][1],
        "output_control": {
            name: [{"task": r["task"], **r["output_control"]} for r in p.results if "output_control" in r]
            for name, p in passes.items()
        },
        "whatif": replay,
        "_passes": passes,
    }


def _differences(passes: dict[str, Pass]) -> list[dict[str, Any]]:
    """Tasks whose outcome differs between the baseline and the scenario pass."""
    base, scn = passes["baseline"].results, passes["scenario"].results
    return [
        {
            "task": b["task"],
            "kind": b["kind"],
            "as": b["as"],
            "dataset": b.get("dataset"),
            "baseline": b["outcome"],
            "baseline_status": b.get("status"),
            "scenario": s["outcome"],
            "scenario_status": s.get("status"),
        }
        for b, s in zip(base, scn, strict=True)
        if (b["outcome"], b.get("status")) != (s["outcome"], s.get("status"))
    ]
