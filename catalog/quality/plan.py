"""Which checks a dataset version gets: schema-implied, tag-implied and declared (GX suite)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from catalog import validators as v
from catalog.fields import Schema
from common.errors import Invalid

CUSTOM = {c: f"expect_column_values_to_be_valid_{c}" for c in sorted(v.COLUMN_CHECKS)}
CUSTOM["unique"] = "expect_column_values_to_be_unique"
CUSTOM["not_null"] = "expect_column_values_to_not_be_null"
CUSTOM["coord_china"] = "expect_column_pair_values_to_be_in_china"
# GX has no check-digit expectation: the GX-only baseline checks the shape of these codes instead.
SHAPE_REGEX = {
    "gb11643": r"^\d{17}[\dXx]$",
    "gb32100": r"^[0-9A-HJ-NPQRTUWXY]{18}$",
    "phone_cn": f"^(?:{v.MOBILE}|{v.LANDLINE})$",
    "admin_division": r"^(?:" + "|".join(sorted(v.PROVINCES)) + r")\d{4}$",
    "email": f"^{v.EMAIL}$",
    "bank_card_luhn": r"^\d{12,19}$",
    "date_valid": r"^(?:19|20)\d\d-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])",
}


@dataclass
class Planned:
    """One check to run: its name, GX expectation type and kwargs, severity, threshold and origin."""

    check: str
    expectation_type: str
    kwargs: dict[str, Any]
    source: Literal["tag", "schema", "suite"]
    severity: Literal["error", "warn"] = "error"
    mostly: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)  # extra validator arguments (e.g. not_future)

    @property
    def column(self) -> str | None:
        return self.kwargs.get("column") or self.kwargs.get("column_A")

    def gx_dict(self) -> dict[str, Any]:
        """As a GX expectation configuration dict."""
        kw = {**self.kwargs, **({"mostly": self.mostly} if self.mostly < 1 else {})}
        return {
            "type": self.expectation_type,
            "kwargs": kw,
            "severity": "critical" if self.severity == "error" else "warning",
        }


def _severity(value: Any, where: str) -> Literal["error", "warn"]:
    if value in (None, "error", "critical"):
        return "error"
    if value in ("warn", "warning", "info"):
        return "warn"
    raise Invalid(f"{where}: severity must be 'error' or 'warn'")


def _mostly(value: Any, where: str) -> float:
    try:
        m = 1.0 if value is None else float(value)
    except (TypeError, ValueError):
        m = -1.0
    if not 0.0 < m <= 1.0:
        raise Invalid(f"{where}: mostly must be a fraction in (0, 1]")
    return m


def plan(
    schema: Schema, tag_checks: dict[str, list[dict[str, Any]]], suite: dict[str, Any] | None
) -> list[Planned]:
    """Every check for this schema, de-duplicated (a repeated check keeps the stricter severity)."""
    out: list[Planned] = []
    lons = {lon: lat for lon, lat in schema.geo_pairs()}
    for f in schema.fields:
        col = {"column": f.name}
        if f.required:
            out.append(Planned("not_null", CUSTOM["not_null"], col, "schema"))
        if f.unique:
            out.append(Planned("unique", CUSTOM["unique"], col, "schema"))
        if f.allowed is not None:
            out.append(
                Planned(
                    "in_set", "expect_column_values_to_be_in_set", {**col, "value_set": f.allowed}, "schema"
                )
            )
        if f.minimum is not None or f.maximum is not None:
            out.append(
                Planned(
                    "between",
                    "expect_column_values_to_be_between",
                    {**col, "min_value": f.minimum, "max_value": f.maximum},
                    "schema",
                )
            )
        for spec in tag_checks.get(f.tag, []):
            name = spec.get("check")
            where = f"tag {f.tag!r} check {str(name)[:30]!r}"
            if name not in v.CHECK_NAMES:
                raise Invalid(f"{where}: unknown check; use one of {sorted(v.CHECK_NAMES)}")
            params = {k: x for k, x in spec.items() if k not in ("check", "severity", "mostly")}
            kwargs: dict[str, Any] = col
            if name == "coord_china":
                if f.name in lons:
                    kwargs = {"column_A": f.name, "column_B": lons[f.name]}
                elif f.tag == "geo_point":
                    continue  # the lat side of a pair: checked with its lon
                else:
                    raise Invalid(f"{where}: coord_china applies only to geo_point lon/lat fields")
            out.append(
                Planned(
                    name,
                    CUSTOM[name],
                    kwargs,
                    "tag",
                    _severity(spec.get("severity"), where),
                    _mostly(spec.get("mostly"), where),
                    params,
                )
            )
    for i, e in enumerate((suite or {}).get("expectations", [])):
        kw = dict(e.get("kwargs") or {})
        where = f"suite expectation {i + 1}"
        mostly = _mostly(kw.pop("mostly", None), where)
        out.append(
            Planned(
                str(e.get("type")),
                str(e.get("type")),
                kw,
                "suite",
                _severity(e.get("severity"), where),
                mostly,
            )
        )
    return _dedupe(out)


def _dedupe(checks: list[Planned]) -> list[Planned]:
    seen: dict[str, Planned] = {}
    for p in checks:
        key = f"{p.expectation_type}|{sorted((k, repr(x)) for k, x in p.kwargs.items())}|{p.params}"
        if key in seen:
            if p.severity == "error":
                seen[key].severity = "error"
            continue
        seen[key] = p
    return list(seen.values())


def to_gx_builtin(p: Planned) -> list[dict[str, Any]]:
    """The nearest GX built-in expectations for a planned check (used by the GX-only baseline)."""
    sev = "critical" if p.severity == "error" else "warning"
    extra = {"mostly": p.mostly} if p.mostly < 1 else {}
    if p.check == "coord_china":
        return [
            {
                "type": "expect_column_values_to_be_between",
                "severity": sev,
                "kwargs": {
                    "column": p.kwargs["column_A"],
                    "min_value": v.CHINA_LON[0],
                    "max_value": v.CHINA_LON[1],
                    **extra,
                },
            },
            {
                "type": "expect_column_values_to_be_between",
                "severity": sev,
                "kwargs": {
                    "column": p.kwargs["column_B"],
                    "min_value": v.CHINA_LAT[0],
                    "max_value": v.CHINA_LAT[1],
                    **extra,
                },
            },
        ]
    if p.check in SHAPE_REGEX:
        return [
            {
                "type": "expect_column_values_to_match_regex",
                "severity": sev,
                "kwargs": {"column": p.kwargs["column"], "regex": SHAPE_REGEX[p.check], **extra},
            }
        ]
    return [p.gx_dict()]
