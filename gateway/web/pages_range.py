"""Operator pages for the data range: scenarios (switch on/off) and experiments with their reports."""

from __future__ import annotations

import logging
import threading

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from common.errors import Invalid
from datarange import definition, scenarios, service
from gateway.db import unit_of_work
from gateway.web.render import WebDep, WebRoute, require_signed_in

router = APIRouter(route_class=WebRoute, include_in_schema=False)
log = logging.getLogger("pdg.web.range")


@router.get("/range/scenarios", response_class=HTMLResponse)
def scenario_list(w: WebDep) -> Response:
    require_signed_in(w)
    with w.uow(read=True) as s:
        items = scenarios.list_scenarios(s, actor=w.actor)
    return w.render("scenarios.html", items=items)


@router.post("/range/scenarios/{scenario_id}/{verb}")
async def switch(scenario_id: str, verb: str, w: WebDep) -> Response:
    require_signed_in(w)
    form = await w.form()
    reason = str(form.get("reason") or "")[:500]
    with w.uow() as s:
        if verb == "activate":
            scenarios.activate(s, actor=w.actor, scenario_id=scenario_id, reason=reason)
        elif verb == "deactivate":
            scenarios.deactivate(s, actor=w.actor, scenario_id=scenario_id, reason=reason)
        else:
            raise Invalid("switch a scenario on (activate) or off (deactivate)")
    return w.redirect("/range/scenarios")


@router.get("/range/experiments", response_class=HTMLResponse)
def experiment_list(w: WebDep) -> Response:
    require_signed_in(w)
    with w.uow(read=True) as s:
        runs = [service.to_out(r) for r in service.list_runs(s, actor=w.actor)]
    return w.render("experiments.html", runs=runs, samples=list(definition.samples()))


@router.post("/range/experiments")
async def start(w: WebDep) -> Response:
    """Start a packaged sample experiment; it runs in the background like the API's."""
    require_signed_in(w)
    form = await w.form()
    sample = str(form.get("sample") or "")
    if sample not in definition.samples():
        raise Invalid("choose one of the sample experiments")
    with w.uow() as s:
        run = service.start(s, actor=w.actor, text=definition.load_sample(sample))
        run_id = service.to_out(run)["id"]
    st = w.state

    def work() -> None:
        try:
            service.execute(
                lambda: unit_of_work(st.engine), run_id, keyring=st.keyring, data_dir=st.data_dir,
                cursor_key=st.secret_key,
            )  # fmt: skip
        except Exception:  # recorded on the run as failed
            log.exception("experiment %s failed", run_id)

    threading.Thread(target=work, name=f"range-{run_id}", daemon=True).start()
    return w.redirect(f"/range/experiments/{run_id}")


@router.get("/range/experiments/{run_id}", response_class=HTMLResponse)
def experiment(run_id: str, w: WebDep) -> Response:
    require_signed_in(w)
    with w.uow(read=True) as s:
        run = service.to_out(service.get(s, actor=w.actor, run_id=run_id))
    return w.render("experiment.html", run=run)


@router.get("/range/experiments/{run_id}/report.html", response_class=HTMLResponse)
def report_html(run_id: str, w: WebDep) -> Response:
    """The report's own self-contained page (inline SVG charts), framed by the experiment page."""
    require_signed_in(w)
    from datarange.html import render

    with w.uow(read=True) as s:
        rep = service.get_report(s, actor=w.actor, run_id=run_id)
    resp = w.finish(HTMLResponse(render(rep)))
    resp.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'self'"
    resp.headers["X-Frame-Options"] = "SAMEORIGIN"
    return resp
