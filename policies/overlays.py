"""Emergency scenarios (应急场景): YAML files in `policies/scenarios/`, each with a Cedar overlay of permits.

An overlay may only add `permit` rules with their own `scenario.<id>.` ids. Cedar's forbids always win,
so an overlay can widen what the baseline permits but can never cross a hard line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from common.actor import Actor
from common.errors import Invalid
from policies import cedartext


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Title(_Strict):
    zh: str
    en: str


class Participants(_Strict):
    """Who takes part: by role and/or organisation code (an empty list places no limit)."""

    roles: list[str] = []
    orgs: list[str] = []


class Scope(_Strict):
    """Datasets in scope: by category and/or dataset code."""

    categories: list[str] = []
    codes: list[str] = []


class Scenario(_Strict):
    """One scenario file, typed."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{2,63}$")
    title: Title
    description: str
    participants: Participants
    datasets: Scope
    default_duration_hours: int = Field(ge=1, le=24 * 90)
    purposes: list[str] = Field(min_length=1)
    overlay: str

    def participant(self, actor: Actor) -> bool:
        """Does `actor` take part in this scenario?"""
        p = self.participants
        return (not p.roles or actor.role in p.roles) and (not p.orgs or (actor.org or "") in p.orgs)

    def in_scope(self, category: str, code: str) -> bool:
        """Is a dataset of this category/code within the scenario?"""
        d = self.datasets
        if not d.categories and not d.codes:
            return True
        return category in d.categories or code in d.codes


def overlay_problems(scn: Scenario, *, schema: str, baseline_ids: set[str]) -> list[tuple[int, str]]:
    """(line within the overlay, message) for everything that makes an overlay unacceptable."""
    parse = cedartext.parse_problems(scn.overlay)
    if parse:
        return parse
    out: list[tuple[int, str]] = []
    seen: set[str] = set()
    prefix = f"scenario.{scn.id}."
    infos = cedartext.policies(scn.overlay)
    if not infos:
        out.append((1, "overlay has no rules"))
    for p in infos:
        if p.effect != "permit":
            out.append((p.line, "an overlay may only add permit rules; forbid belongs to the baseline"))
        if p.template:
            out.append((p.line, "an overlay may not contain templates (?principal/?resource)"))
        if not p.id:
            out.append((p.line, "every overlay rule needs an @id"))
            continue
        if not p.id.startswith(prefix):
            out.append((p.line, f"overlay rule @id {p.id!r} must start with {prefix!r}"))
        if p.id in baseline_ids:
            out.append((p.line, f"overlay rule @id {p.id!r} clashes with a baseline rule"))
        if p.id in seen:
            out.append((p.line, f"duplicate @id {p.id!r}"))
        seen.add(p.id)
    out.extend(cedartext.validation_problems(scn.overlay, schema))
    return out


def read_file(path: Path) -> tuple[Any, Scenario | None, list[tuple[tuple[Any, ...], str]]]:
    """(raw YAML, typed scenario or None, [(yaml path, message)])."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    try:
        scn = Scenario.model_validate(data)
    except ValidationError as exc:
        return data, None, [(tuple(e["loc"]), e["msg"]) for e in exc.errors()]
    problems: list[tuple[tuple[Any, ...], str]] = []
    if scn.id != path.stem:
        problems.append((("id",), f"scenario id {scn.id!r} must match the file name {path.stem!r}"))
    return data, scn, problems


def load_dir(directory: Path, *, schema: str, baseline_ids: set[str]) -> dict[str, Scenario]:
    """Every scenario under `directory/scenarios`, validated; Invalid on the first broken file."""
    out: dict[str, Scenario] = {}
    for path in sorted((directory / "scenarios").glob("*.yaml")):
        try:
            _, scn, problems = read_file(path)
        except (OSError, yaml.YAMLError) as exc:
            raise Invalid(f"{path.name}: {exc}") from None
        if scn is None or problems:
            raise Invalid(f"{path.name}: " + "; ".join(f"{'.'.join(map(str, p))}: {m}" for p, m in problems))
        bad = overlay_problems(scn, schema=schema, baseline_ids=baseline_ids)
        if bad:
            raise Invalid(f"{path.name}: overlay: " + "; ".join(f"line {ln}: {m}" for ln, m in bad))
        out[scn.id] = scn
    return out
