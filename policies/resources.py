"""Builders that turn domain objects into the decision point's resources.

Services describe what they act on here, in one place, so the engine's entity model can change without
touching every service.
"""

from __future__ import annotations

from typing import Any


def organisation(code: str, kind: str) -> Any:
    """An organisation as a resource (identity actions)."""
    from policies.engine import Resource

    return Resource.organisation(code=code, kind=kind)
