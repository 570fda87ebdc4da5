"""An isolated range for one pass of an experiment: its own organisations, principals, datasets and engine.

Organisation codes are `<run>-<pass>.<org>` and dataset codes `<run>-<pass>-<name>`, so nothing an
experiment creates can be mistaken for (or reach) real data. The scenario files name real organisations
as participants; the range runs on a copy of the policy files whose participant lists name the range's
organisations instead — the rules themselves are byte for byte the deployed ones.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from common import clock
from common.actor import Actor
from policies.engine import Context, Decision, Engine, Resource

PASSES = ("baseline", "scenario")


def org_prefix(run_id: str, pass_name: str) -> str:
    return f"{run_id}-{pass_name[0]}."


def dataset_code(run_id: str, pass_name: str, name: str) -> str:
    return f"{run_id}-{pass_name[0]}-{name}"


def range_engine(base: Engine, run_id: str) -> Engine:
    """The deployed policies with every scenario's participant orgs (and dataset codes) mapped into this run."""
    src = base.directory
    with tempfile.TemporaryDirectory(prefix="pdg-range-") as tmp:
        dst = Path(tmp)
        for name in ("vocabulary.yaml", "schema.cedarschema", "access.cedar"):
            shutil.copyfile(src / name, dst / name)
        (dst / "scenarios").mkdir()
        for path in sorted((src / "scenarios").glob("*.yaml")):
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            parts, scope = data.get("participants") or {}, data.get("datasets") or {}
            parts["orgs"] = [org_prefix(run_id, p) + o for o in parts.get("orgs") or [] for p in PASSES]
            scope["codes"] = [dataset_code(run_id, p, c) for c in scope.get("codes") or [] for p in PASSES]
            text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
            (dst / "scenarios" / path.name).write_text(text, encoding="utf-8")
        return Engine.load(dst)


@dataclass
class Captured:
    """One decision the range's engine made: its exact inputs (for the what-if replay) and the answer."""

    actor: Actor
    action: str
    resource: Resource
    context: Context
    decision: Decision


class Recording:
    """Wraps the range's engine and keeps the inputs of every decision it makes (thread-safe)."""

    def __init__(self, inner: Engine) -> None:
        self.inner = inner
        self.captured: list[Captured] = []
        self._lock = threading.Lock()

    def _keep(self, reqs: list[tuple[Any, ...]], decisions: list[Decision]) -> None:
        at = clock.now()
        with self._lock:
            for (actor, action, resource, context), d in zip(reqs, decisions, strict=True):
                ctx = dataclasses.replace(context or Context(), at=(context.at if context and context.at else at))
                self.captured.append(Captured(actor, action, resource, ctx, d))

    def authorize(self, actor: Actor, action: str, resource: Resource, context: Any = None, *, scenario: Any = None):
        d = self.inner.authorize(actor, action, resource, context, scenario=scenario)
        self._keep([(actor, action, resource, context)], [d])
        return d

    def authorize_batch(self, requests: Any, *, scenario: Any = None) -> list[Decision]:
        out = self.inner.authorize_batch(requests, scenario=scenario)
        self._keep(list(requests), out)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@dataclass
class Pass:
    """One pass of a run: where its things live and what its tasks produced."""

    run_id: str
    name: str  # baseline | scenario
    scenario: str | None  # the overlay in force during this pass
    actors: dict[str, Actor] = field(default_factory=dict)  # participant org -> acting principal
    codes: dict[str, str] = field(default_factory=dict)  # dataset name -> code in the range
    specs: dict[str, Any] = field(default_factory=dict)  # dataset name -> its DatasetSpec
    requests: dict[str, int] = field(default_factory=dict)  # request task id -> access request id
    grants: dict[str, int] = field(default_factory=dict)  # request task id -> grant id
    results: list[dict[str, Any]] = field(default_factory=list)
    started: datetime | None = None

    @property
    def prefix(self) -> str:
        return org_prefix(self.run_id, self.name)

    def org(self, org: str) -> str:
        return self.prefix + org

    def local(self, code: str | None) -> str | None:
        """A range org or dataset code back to the experiment's own name."""
        if code is None:
            return None
        if code.startswith(self.prefix):
            return code[len(self.prefix) :]
        back = {v: k for k, v in self.codes.items()}
        return back.get(code, code)
