"""The quality report: per-check results in Great Expectations' shape, a score and a verdict.

Score = 100 × Σ wᵢ·(1 − unexpectedᵢ/evaluatedᵢ) / Σ wᵢ over all checks, with w = 2 for error-severity
checks and 1 for warnings (a check that raised counts as 0). Verdict: "rejected" when any
error-severity check misses its `mostly` threshold, else "accepted" (warnings never reject).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

Severity = Literal["error", "warn"]


class FailingRow(BaseModel):
    """One failing row: 1-based data-row number, its key and value, both masked per their tags."""

    row: int
    key: str | None = None
    value: str | None = None


class CheckResult(BaseModel):
    """One check's outcome (an ExpectationValidationResult with our severity and masked samples)."""

    check: str
    expectation_type: str
    kwargs: dict[str, Any] = Field(default_factory=dict)
    source: Literal["tag", "schema", "suite"]
    severity: Severity = "error"
    mostly: float = 1.0
    passed: bool
    element_count: int = 0
    missing_count: int = 0
    unexpected_count: int = 0
    unexpected_percent: float = 0.0
    samples: list[FailingRow] = Field(default_factory=list)
    exception: str | None = None

    def to_gx(self) -> dict[str, Any]:
        """This result as a GX 1.x ExpectationValidationResult JSON dict."""
        return {
            "success": self.passed,
            "expectation_config": {
                "type": self.expectation_type,
                "kwargs": {**self.kwargs, **({"mostly": self.mostly} if self.mostly < 1 else {})},
                "meta": {"check": self.check, "source": self.source},
                "severity": "critical" if self.severity == "error" else "warning",
            },
            "result": {
                "element_count": self.element_count,
                "missing_count": self.missing_count,
                "unexpected_count": self.unexpected_count,
                "unexpected_percent": self.unexpected_percent,
                "partial_unexpected_index_list": [s.row - 1 for s in self.samples],
            },
            "exception_info": {
                "raised_exception": self.exception is not None,
                "exception_message": self.exception,
                "exception_traceback": None,
            },
        }


class QualityReport(BaseModel):
    """All checks of one validation run, with the score, the verdict and how it was computed."""

    rows: int
    engine: Literal["fast", "gx"]
    verdict: Literal["accepted", "rejected"]
    score: float
    checks: list[CheckResult]
    suite_name: str | None = None
    seconds: float = 0.0

    @property
    def statistics(self) -> dict[str, Any]:
        """GX-style counts of evaluated / successful expectations."""
        ok = sum(c.passed for c in self.checks)
        n = len(self.checks)
        return {
            "evaluated_expectations": n,
            "successful_expectations": ok,
            "unsuccessful_expectations": n - ok,
            "success_percent": 100.0 * ok / n if n else 100.0,
        }

    def to_gx(self) -> dict[str, Any]:
        """The report as a GX 1.x ExpectationSuiteValidationResult JSON dict."""
        return {
            "success": all(c.passed for c in self.checks),
            "results": [c.to_gx() for c in self.checks],
            "suite_name": self.suite_name or "pdg",
            "statistics": self.statistics,
            "meta": {"engine": self.engine, "score": self.score, "verdict": self.verdict},
        }


def summarise(
    rows: int,
    checks: list[CheckResult],
    *,
    engine: Literal["fast", "gx"],
    suite_name: str | None,
    seconds: float,
) -> QualityReport:
    """Score and verdict for a list of check results."""
    total = weight = 0.0
    for c in checks:
        w = 2.0 if c.severity == "error" else 1.0
        evaluated = c.element_count - (0 if c.check == "not_null" else c.missing_count)
        rate = 0.0 if c.exception else (1.0 - c.unexpected_count / evaluated if evaluated else 1.0)
        total += w * rate
        weight += w
    score = round(100.0 * total / weight, 2) if weight else 100.0
    rejected = any(c.severity == "error" and not c.passed for c in checks)
    return QualityReport(
        rows=rows,
        engine=engine,
        verdict="rejected" if rejected else "accepted",
        score=score,
        checks=checks,
        suite_name=suite_name,
        seconds=round(seconds, 4),
    )
