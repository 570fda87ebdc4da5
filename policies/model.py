"""What the decision point reasons about: resources, grants, the request context, and its decisions."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from common import clock
from common.errors import Invalid
from policies.vocabulary import TYPES

RESOURCE_TYPES = ("Dataset", "Organisation", "AuditLog", "Scenario")


@dataclass(frozen=True)
class Resource:
    """What an action applies to: build it with dataset(), organisation(), audit_log() or scenario()."""

    type: str
    id: str
    category: str = ""
    grade: int = 1  # 1..4; core data is refused before it gets here
    open_type: str = "closed"
    share_type: str = "closed"
    owner: str = ""  # owning organisation code
    kind: str = ""  # organisation kind, for Organisation resources

    def __post_init__(self) -> None:
        if self.type not in RESOURCE_TYPES:
            raise Invalid(f"unknown resource type {self.type!r}; one of {', '.join(RESOURCE_TYPES)}")
        if self.type == "Dataset":
            if not isinstance(self.grade, int) or not 1 <= self.grade <= 4:
                raise Invalid(f"dataset grade must be 1..4 (G1..G4), got {self.grade!r}; core data is refused")
            if self.open_type not in TYPES or self.share_type not in TYPES:
                raise Invalid(f"open and share types must be one of {', '.join(TYPES)}")

    @classmethod
    def dataset(cls, code: str, *, category: str, grade: int, open_type: str, share_type: str, owner: str) -> Resource:
        """A dataset as the rules see it."""
        return cls("Dataset", code, category, grade, open_type, share_type, owner)

    @classmethod
    def organisation(cls, code: str, kind: str) -> Resource:
        """An organisation (identity actions)."""
        return cls("Organisation", code, kind=kind)

    @classmethod
    def audit_log(cls, name: str = "main") -> Resource:
        return cls("AuditLog", name)

    @classmethod
    def scenario(cls, scenario_id: str) -> Resource:
        return cls("Scenario", scenario_id)

    def entity(self) -> dict[str, Any]:
        if self.type == "Dataset":
            attrs: dict[str, Any] = {
                "code": self.id,
                "category": self.category,
                "grade": self.grade,
                "open_type": self.open_type,
                "share_type": self.share_type,
                "owner": self.owner,
            }
        elif self.type == "Organisation":
            attrs = {"code": self.id, "kind": self.kind}
        elif self.type == "Scenario":
            attrs = {"code": self.id}
        else:
            attrs = {}
        return {"uid": {"type": self.type, "id": self.id}, "attrs": attrs, "parents": []}


def _frozen(value: Iterable[str]) -> frozenset[str]:
    return value if isinstance(value, frozenset) else frozenset(value)


@dataclass(frozen=True)
class Grant:
    """An approved request: which organisation, datasets and columns, for what purpose, until when."""

    org: str
    datasets: frozenset[str]
    purpose: str
    expires_at: datetime
    columns: frozenset[str] = frozenset()
    revoked: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "datasets", _frozen(self.datasets))
        object.__setattr__(self, "columns", _frozen(self.columns))

    @cached_property
    def _cedar(self) -> dict[str, Any]:
        # A grant is immutable; services reuse one object for many decisions.
        return {
            "present": True,
            "revoked": self.revoked,
            "expires": int(clock.as_utc(self.expires_at).timestamp()),
            "purpose": self.purpose,
            "org": self.org,
            "datasets": sorted(self.datasets),
            "columns": sorted(self.columns),
        }

    def cedar(self) -> dict[str, Any]:
        """The grant as the Cedar context record."""
        return self._cedar


NO_GRANT = {
    "present": False,
    "revoked": False,
    "expires": 0,
    "purpose": "",
    "org": "",
    "datasets": [],
    "columns": [],
}


@dataclass(frozen=True)
class Context:
    """The circumstances of one request.

    grant: the grant the caller relies on (None: no grant).  purpose: purpose code of this request.
    columns: columns the action touches (must all be in the grant).  raw_grade: highest grade among the
    columns that leave unmasked in this action's output (0: none).  requester/_org/_role: for approvals
    and export reviews, who asked.  scenario: the scenario in force (the data range passes it).
    at: decision time (default: the clock).
    """

    grant: Grant | None = None
    purpose: str = ""
    columns: frozenset[str] = frozenset()
    raw_grade: int = 0
    requester: str | None = None
    requester_org: str | None = None
    requester_role: str | None = None
    scenario: str | None = None
    at: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", _frozen(self.columns))
        if not isinstance(self.raw_grade, int) or not 0 <= self.raw_grade <= 4:
            raise Invalid(f"raw_grade must be 0..4, got {self.raw_grade!r}")


@dataclass(frozen=True)
class Decision:
    """The answer: allowed or not, the @ids that decided, the policy version and scenario in force."""

    allowed: bool
    reasons: tuple[str, ...]
    policy_version: str
    scenario: str | None
    action: str
    errors: tuple[str, ...] = field(default=())

    def __bool__(self) -> bool:
        return self.allowed
