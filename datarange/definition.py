"""An experiment definition (YAML): scenario, participants, datasets and the tasks they perform.

    name: phe-drill
    scenario: public_health_emergency
    participants: [{org: 510100-WJW, role: department}, {org: OPERATOR, role: operator}, ...]
    datasets: [{name: pop, library: population, owner: 510100-GA, rows: 200}]
    tasks:
      - {id: ask, kind: emergency_read, as: 510100-WJW, dataset: pop, columns: [gender], purpose: epidemic_response,
         expect: {baseline: denied, scenario: allowed}}

See docs/datarange.md for every task kind and field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from common.errors import Invalid

KINDS = {
    # kind: (roles that may be named in `as`, what the task needs)
    "request": ("department", "enterprise"),  # sharing (department) or sandbox access (enterprise)
    "approve": ("department", "operator"),
    "deny": ("department", "operator"),
    "read_shared": ("department",),  # a page of a shared dataset through the request's grant
    "emergency_read": (
        "department",
        "operator",
        "enterprise",
    ),  # a shared dataset without a grant: only a scenario overlay allows it
    "query": ("enterprise",),  # SQL in the request's sandbox workspace, through output control
    "download": ("public", "department", "enterprise", "operator"),  # a page of the open edition
    "publish": ("department",),  # a new version of a dataset, generated with `rows` rows
    "quality": ("department", "operator", "auditor"),  # read the live version's quality report
}
LIBRARIES = ("population", "legal_person", "geospatial", "certificate")
OUTCOMES = ("allowed", "denied")
MAX_ROWS = 5000
MAX_TASKS = 200


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Participant(_Strict):
    org: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{1,29}$")
    role: Literal["department", "enterprise", "operator", "auditor"]
    name: str = Field(default="", max_length=100)


class DatasetSpec(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9]{1,11}$")
    library: Literal["population", "legal_person", "geospatial", "certificate"]
    owner: str
    rows: int = Field(default=200, ge=10, le=MAX_ROWS)
    open_type: Literal["unconditional", "conditional", "closed"] | None = None
    share_type: Literal["unconditional", "conditional", "closed"] | None = None
    drop: list[str] = []  # columns left out of the sample (and its schema)


class Task(_Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    kind: Literal[
        "request", "approve", "deny", "read_shared", "emergency_read", "query", "download", "publish", "quality"
    ]
    as_: str = Field(alias="as")
    dataset: str | None = None
    columns: list[str] = []
    datasets: dict[str, list[str]] = {}  # request: several datasets with their columns
    purpose: str | None = None
    request: str | None = None  # approve/deny/read_shared/query: the id of the request task
    sql: str | None = None
    rows: int | None = Field(default=None, ge=10, le=MAX_ROWS)
    reason: str = ""
    expect: str | dict[str, str] | None = None  # allowed | denied | a status; or per pass {baseline:, scenario:}

    def expected(self, pass_name: str) -> str | None:
        if isinstance(self.expect, dict):
            return self.expect.get(pass_name)
        return self.expect


class Experiment(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9-]{2,23}$")
    title: str = ""
    description: str = ""
    scenario: str
    participants: list[Participant] = Field(min_length=1)
    datasets: list[DatasetSpec] = Field(min_length=1)
    tasks: list[Task] = Field(min_length=1, max_length=MAX_TASKS)

    @model_validator(mode="after")
    def _references(self) -> Experiment:
        roles = {p.org: p.role for p in self.participants}
        if len(roles) != len(self.participants):
            raise ValueError("participants: each org once")
        names = {d.name for d in self.datasets}
        if len(names) != len(self.datasets):
            raise ValueError("datasets: each name once")
        for d in self.datasets:
            if roles.get(d.owner) != "department":
                raise ValueError(f"dataset {d.name}: owner {d.owner!r} must be a department participant")
        seen: dict[str, Task] = {}
        for t in self.tasks:
            where = f"task {t.id}"
            if t.id in seen:
                raise ValueError(f"{where}: duplicate id")
            role = "public" if t.as_ == "public" else roles.get(t.as_)
            if role is None:
                raise ValueError(f"{where}: `as` {t.as_!r} is not a participant (or 'public')")
            if role not in KINDS[t.kind]:
                raise ValueError(f"{where}: a {role} cannot do {t.kind} (one of {', '.join(KINDS[t.kind])})")
            for ds in [t.dataset, *t.datasets] if t.dataset else list(t.datasets):
                if ds not in names:
                    raise ValueError(f"{where}: unknown dataset {ds!r}")
            needs_request = t.kind in ("approve", "deny", "read_shared", "query")
            if needs_request and (t.request not in seen or seen[t.request].kind != "request"):
                raise ValueError(f"{where}: `request` must name an earlier request task")
            if t.kind in ("request", "emergency_read") and not (t.purpose and (t.columns or t.datasets)):
                raise ValueError(f"{where}: needs a purpose and the columns asked for")
            if t.kind in ("emergency_read", "download", "publish", "quality") and not t.dataset:
                raise ValueError(f"{where}: needs a dataset")
            if t.kind == "request" and not (t.dataset or t.datasets):
                raise ValueError(f"{where}: needs a dataset (or datasets)")
            if t.kind == "query" and not t.sql:
                raise ValueError(f"{where}: needs sql")
            seen[t.id] = t
        return self

    def role_of(self, org: str) -> str:
        return "public" if org == "public" else next(p.role for p in self.participants if p.org == org)


def parse(text: str) -> Experiment:
    """The experiment in `text` (YAML), or Invalid saying what to fix."""
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise Invalid(f"experiment is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise Invalid("an experiment is a YAML mapping with name, scenario, participants, datasets and tasks")
    try:
        return Experiment.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'experiment'}: {e['msg']}" for e in exc.errors())
        raise Invalid(f"experiment definition: {problems}") from None


SAMPLES_DIR = Path(__file__).parent / "experiments"


def samples() -> dict[str, Path]:
    """The packaged sample experiments by name (file stem)."""
    return {p.stem: p for p in sorted(SAMPLES_DIR.glob("*.yaml"))}


def load_sample(name: str) -> str:
    path = samples().get(name)
    if path is None:
        raise Invalid(f"no sample experiment {name!r}; one of {', '.join(samples())}")
    return path.read_text(encoding="utf-8")
