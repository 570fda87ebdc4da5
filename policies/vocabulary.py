"""The vocabulary: categories, grades, field tags (grade, checks, masking), open/share types, thresholds.

Loaded from `policies/vocabulary.yaml` into typed pydantic objects; unknown keys and wrong types are refused,
and cross-references (check names, tag grades, masking per audience) are validated with the YAML line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from common.errors import Invalid

POLICY_DIR = Path(__file__).resolve().parent
AUDIENCES = ("public", "share", "sandbox")
TYPES = ("unconditional", "conditional", "closed")
# The catalog's quality helper implements exactly these names.
CHECK_NAMES = frozenset(
    {
        "gb11643",
        "gb32100",
        "phone_cn",
        "admin_division",
        "coord_china",
        "date_valid",
        "email",
        "bank_card_luhn",
        "unique",
        "not_null",
    }
)
METHODS = ("none", "partial", "suppress", "pseudonym", "generalise_address", "grid", "year", "email")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Named(_Strict):
    zh: str
    en: str = ""


class Grade(_Strict):
    level: int
    code: str
    en: str
    zh: str
    gbt43697: str


class Core(_Strict):
    refused: Literal[True]
    zh: str
    gbt43697: str
    note: str = ""


class Check(_Strict):
    """A quality check a tag implies; `mostly` is the share of non-null rows that must pass."""

    name: str
    mostly: float = Field(default=1.0, ge=0.0, le=1.0)
    severity: Literal["error", "warn"] = "error"


class Masking(_Strict):
    """How one audience sees a tagged column."""

    method: Literal["none", "partial", "suppress", "pseudonym", "generalise_address", "grid", "year", "email"]
    keep_first: int | None = Field(default=None, ge=0)
    keep_last: int | None = Field(default=None, ge=0)
    cell_deg: float | None = Field(default=None, gt=0.0, le=10.0)
    result_grade: int | None = None


class Tag(_Strict):
    zh: str
    grade: int
    checks: list[Check] = []
    masking: dict[str, Masking]


class TypeRule(_Strict):
    zh: str
    max_grade: int
    max_open_edition_grade: int | None = None


class OutputControl(_Strict):
    min_group_size: int = Field(ge=1)
    max_rows: int = Field(ge=1)
    rounding_base: int = Field(ge=1)
    query_budget_per_day: int = Field(ge=1)
    allowed_functions: list[str]
    join_only_tags: list[str]
    never_output_tags: list[str]


class VolumeSpike(_Strict):
    window_minutes: int = Field(ge=1)
    factor: float = Field(gt=1.0)
    min_events: int = Field(ge=1)


class RepeatedDenials(_Strict):
    window_minutes: int = Field(ge=1)
    count: int = Field(ge=1)


class OffHours(_Strict):
    timezone: str
    start_hour: int = Field(ge=0, le=23)
    end_hour: int = Field(ge=0, le=23)
    min_grade: int


class NearLimit(_Strict):
    fraction: float = Field(gt=0.0, le=1.0)
    count: int = Field(ge=1)
    window_minutes: int = Field(ge=1)


class Alerts(_Strict):
    volume_spike: VolumeSpike
    repeated_denials: RepeatedDenials
    off_hours: OffHours
    near_limit: NearLimit


class Vocabulary(_Strict):
    """The whole vocabulary file, typed."""

    version: int
    categories: dict[str, Named]
    grades: list[Grade]
    core: Core
    audiences: dict[str, str]
    pseudonym_hex: int = Field(ge=8, le=64)
    tags: dict[str, Tag]
    open_types: dict[str, TypeRule]
    share_types: dict[str, TypeRule]
    output_control: OutputControl
    alerts: Alerts

    @property
    def levels(self) -> tuple[int, ...]:
        return tuple(g.level for g in self.grades)

    @property
    def max_level(self) -> int:
        return max(self.levels)

    def grade_code(self, level: int) -> str:
        """'G3' for 3."""
        for g in self.grades:
            if g.level == level:
                return g.code
        raise Invalid(f"grade {level} is not on the scale {self.levels}")

    def tag(self, name: str) -> Tag:
        """The tag, or Invalid naming the known ones."""
        try:
            return self.tags[name]
        except KeyError:
            raise Invalid(f"unknown field tag {name!r}; known tags: {', '.join(sorted(self.tags))}") from None


def semantic_problems(v: Vocabulary) -> list[tuple[tuple[Any, ...], str]]:
    """Cross-reference checks pydantic cannot express; each problem carries its YAML path."""
    out: list[tuple[tuple[Any, ...], str]] = []
    levels = [g.level for g in v.grades]
    if levels != list(range(1, len(levels) + 1)):
        out.append((("grades",), f"grade levels must be 1..n in order, got {levels}"))
    top = max(levels) if levels else 0
    missing_audiences = set(AUDIENCES) - set(v.audiences)
    if missing_audiences or set(v.audiences) - set(AUDIENCES):
        out.append((("audiences",), f"audiences must be exactly {', '.join(AUDIENCES)}"))
    for kind in ("open_types", "share_types"):
        rules: dict[str, TypeRule] = getattr(v, kind)
        if set(rules) != set(TYPES):
            out.append(((kind,), f"{kind} must be exactly {', '.join(TYPES)}, got {', '.join(rules)}"))
        for name, rule in rules.items():
            if not 1 <= rule.max_grade <= top:
                out.append(((kind, name, "max_grade"), f"grade {rule.max_grade} out of range 1..{top}"))
    for name, tag in v.tags.items():
        if not 1 <= tag.grade <= top:
            out.append(
                (
                    ("tags", name, "grade"),
                    f"tag {name}: grade {tag.grade} out of range 1..{top} (core is refused)",
                )
            )
        for i, check in enumerate(tag.checks):
            if check.name not in CHECK_NAMES:
                out.append(
                    (
                        ("tags", name, "checks", i, "name"),
                        f"tag {name}: unknown check {check.name!r}; one of {', '.join(sorted(CHECK_NAMES))}",
                    )
                )
        if set(tag.masking) != set(AUDIENCES):
            out.append((("tags", name, "masking"), f"tag {name}: masking needs exactly the audiences {AUDIENCES}"))
        for aud, m in tag.masking.items():
            out.extend(_masking_problems(name, tag, aud, m, top))
    oc = v.output_control
    for i, t in enumerate(oc.join_only_tags):
        if t not in v.tags:
            out.append((("output_control", "join_only_tags", i), f"unknown field tag {t!r}"))
    for i, t in enumerate(oc.never_output_tags):
        if t not in v.tags:
            out.append((("output_control", "never_output_tags", i), f"unknown field tag {t!r}"))
    if not 1 <= v.alerts.off_hours.min_grade <= top:
        out.append((("alerts", "off_hours", "min_grade"), f"grade out of range 1..{top}"))
    return out


def _masking_problems(name: str, tag: Tag, aud: str, m: Masking, top: int) -> list[tuple[tuple[Any, ...], str]]:
    path = ("tags", name, "masking", aud)
    out: list[tuple[tuple[Any, ...], str]] = []
    if m.method == "partial" and (m.keep_first is None or m.keep_last is None):
        out.append((path, f"tag {name}/{aud}: partial masking needs keep_first and keep_last"))
    if m.method != "partial" and (m.keep_first is not None or m.keep_last is not None):
        out.append((path, f"tag {name}/{aud}: keep_first/keep_last only apply to partial masking"))
    if m.method == "grid" and m.cell_deg is None:
        out.append((path, f"tag {name}/{aud}: grid masking needs cell_deg"))
    if m.method == "none" and m.result_grade not in (None, tag.grade):
        out.append((path, f"tag {name}/{aud}: method none keeps grade {tag.grade}"))
    if m.result_grade is not None and not 1 <= m.result_grade <= tag.grade:
        out.append((path, f"tag {name}/{aud}: result_grade must be within 1..{tag.grade}"))
    if tag.grade == top and m.method == "none":
        # Hard line: no raw column of the top grade ever leaves the gateway, whoever the audience.
        out.append((path, f"tag {name}/{aud}: a G{top} tag may never leave unmasked (method none)"))
    return out


def result_grade(tag: Tag, audience: str) -> int:
    """The grade of a column with this tag after masking for `audience`."""
    m = tag.masking[audience]
    if m.method == "suppress":
        return 1
    if m.method == "none" or m.result_grade is None:
        return tag.grade
    return m.result_grade


def parse(data: Any) -> Vocabulary:
    """Validate already-loaded YAML data; Invalid lists every problem."""
    try:
        vocab = Vocabulary.model_validate(data)
    except ValidationError as exc:
        msgs = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise Invalid("vocabulary: " + "; ".join(msgs)) from None
    problems = semantic_problems(vocab)
    if problems:
        raise Invalid("vocabulary: " + "; ".join(f"{'.'.join(map(str, p))}: {m}" for p, m in problems))
    return vocab


def load(path: str | Path | None = None) -> Vocabulary:
    """Load and validate a vocabulary file (default: the packaged one)."""
    p = Path(path) if path is not None else POLICY_DIR / "vocabulary.yaml"
    if p.is_dir():
        p = p / "vocabulary.yaml"
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise Invalid(f"{p}: cannot read vocabulary: {exc}") from None
    return parse(data)


@lru_cache(maxsize=1)
def default() -> Vocabulary:
    """The packaged vocabulary, loaded once per process."""
    return load()


# ---- questions other layers ask ---------------------------------------------------------------

FieldsArg = Mapping[str, str] | Iterable[tuple[str, str]]


def _pairs(fields: FieldsArg) -> list[tuple[str, str]]:
    return list(fields.items()) if isinstance(fields, Mapping) else [(str(n), str(t)) for n, t in fields]


def grade_of_fields(
    fields: FieldsArg, *, raise_to: int | None = None, vocab: Vocabulary | None = None
) -> tuple[int, tuple[str, ...]]:
    """Dataset grade = highest field grade (column -> tag), unless a policy raises it; with the reasons."""
    v = vocab or default()
    grade, reasons = 1, []
    for col, tag_name in _pairs(fields):
        g = v.tag(tag_name).grade
        if g > grade:
            grade = g
        if g > 1:
            reasons.append(f"{col}: tag {tag_name} is {v.grade_code(g)}")
    if raise_to is not None:
        if not 1 <= raise_to <= v.max_level:
            raise Invalid(f"raised grade {raise_to} out of range 1..{v.max_level} (core data is refused)")
        if raise_to > grade:
            grade = raise_to
            reasons.append(f"raised by policy to {v.grade_code(raise_to)}")
    return grade, tuple(reasons)


def checks_for_tag(tag: str, vocab: Vocabulary | None = None) -> tuple[Check, ...]:
    """The quality checks a tag implies."""
    return tuple((vocab or default()).tag(tag).checks)


def masking_for(tag: str, audience: str, vocab: Vocabulary | None = None) -> Masking:
    """How `audience` (public | share | sandbox) sees a column with this tag."""
    if audience not in AUDIENCES:
        raise Invalid(f"unknown audience {audience!r}; one of {', '.join(AUDIENCES)}")
    return (vocab or default()).tag(tag).masking[audience]


def edition_grade(fields: FieldsArg, audience: str = "public", vocab: Vocabulary | None = None) -> int:
    """Highest grade left in the columns after masking for `audience` (1 if no columns)."""
    v = vocab or default()
    if audience not in AUDIENCES:
        raise Invalid(f"unknown audience {audience!r}; one of {', '.join(AUDIENCES)}")
    return max((result_grade(v.tag(t), audience) for _, t in _pairs(fields)), default=1)


def _type_rule(kind: str, name: str, v: Vocabulary) -> TypeRule:
    rules = v.open_types if kind == "open" else v.share_types
    if name not in rules:
        raise Invalid(f"unknown {kind} type {name!r}; one of {', '.join(rules)}")
    return rules[name]


def may_open(
    grade: int, open_type: str, *, open_edition_grade: int | None = None, vocab: Vocabulary | None = None
) -> tuple[bool, str]:
    """May a dataset of `grade` carry `open_type`? Unconditional needs the open edition's grade too."""
    v = vocab or default()
    rule = _type_rule("open", open_type, v)
    if grade > rule.max_grade:
        return False, f"{open_type} opening allows at most {v.grade_code(rule.max_grade)}"
    if rule.max_open_edition_grade is not None:
        eg = grade if open_edition_grade is None else open_edition_grade
        if eg > rule.max_open_edition_grade:
            return False, (
                f"{open_type} opening needs every field masked to {v.grade_code(rule.max_open_edition_grade)}"
                f" in the open edition; it stays {v.grade_code(eg)}"
            )
    return True, "ok"


def may_share(grade: int, share_type: str, *, vocab: Vocabulary | None = None) -> tuple[bool, str]:
    """May a dataset of `grade` carry `share_type`?"""
    v = vocab or default()
    rule = _type_rule("share", share_type, v)
    if grade > rule.max_grade:
        return False, f"{share_type} sharing allows at most {v.grade_code(rule.max_grade)}"
    return True, "ok"


def check_types(fields: FieldsArg, open_type: str, share_type: str, vocab: Vocabulary | None = None) -> list[str]:
    """Every reason the declared open/share types do not fit these fields (empty when they do)."""
    v = vocab or default()
    grade, _ = grade_of_fields(fields, vocab=v)
    problems = []
    ok, why = may_open(grade, open_type, open_edition_grade=edition_grade(fields, "public", v), vocab=v)
    if not ok:
        problems.append(why)
    ok, why = may_share(grade, share_type, vocab=v)
    if not ok:
        problems.append(why)
    return problems
