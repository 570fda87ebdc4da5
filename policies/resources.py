"""Builders that turn domain objects into the decision point's resources.

Services describe what they act on here, in one place, so the engine's entity model can change without
touching every service.
"""

from __future__ import annotations

from typing import Any

from policies.engine import Resource


def organisation(code: str, kind: str) -> Resource:
    """An organisation as a resource (identity actions)."""
    return Resource.organisation(code=code, kind=kind)


def dataset_attrs(
    *, code: str, owner: str, category: str, grade: int, open_type: str, share_type: str
) -> Resource:
    """A dataset from its attributes (e.g. one being registered)."""
    return Resource.dataset(
        code, category=category, grade=grade, open_type=open_type, share_type=share_type, owner=owner
    )


def dataset(ds: Any) -> Resource:
    """A catalog Dataset row as a resource; grade codes 'G1'..'G4' become levels 1..4."""
    return dataset_attrs(
        code=ds.code,
        owner=ds.owner_org,
        category=ds.category,
        grade=int(str(ds.grade).lstrip("G")),
        open_type=ds.open_type,
        share_type=ds.share_type,
    )


def audit_log() -> Resource:
    return Resource.audit_log()


def scenario(scenario_id: str) -> Resource:
    return Resource.scenario(scenario_id)
