"""Per-grant release budget and the differencing defence: plain, serialisable state the caller persists."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class ReleasedQuery:
    """What one released query revealed: its tables, group keys and individuals per group."""

    seq: int
    digest: str
    tables: list[str]
    group_keys: list[str]  # key ids: base sources, e.g. "population.district_code"
    groups: list[list[Any]]  # [[key values...], individuals], including groups that were suppressed
    filters: list[str] = field(default_factory=list)


@dataclass
class GrantBudget:
    """Queries and released cells left for one grant, and the releases earlier queries made."""

    max_queries: int = 200
    max_released_cells: int = 20_000
    queries_used: int = 0
    cells_released: int = 0
    released: list[ReleasedQuery] = field(default_factory=list)
    max_history: int = 500  # oldest releases beyond this are forgotten (documented limit)

    def to_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it deep-copies every group of up to 500 releases, once per query.
        out: dict[str, Any] = {f: getattr(self, f) for f in _SCALARS}
        out["released"] = [{f: getattr(r, f) for f in _RELEASE_FIELDS} for r in self.released]
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True, default=str)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GrantBudget:
        released = [ReleasedQuery(**r) for r in data.get("released", [])]
        rest = {k: v for k, v in data.items() if k != "released"}
        return cls(**rest, released=released)

    @classmethod
    def from_json(cls, text: str) -> GrantBudget:
        return cls.from_dict(json.loads(text))

    @property
    def queries_left(self) -> int:
        return max(0, self.max_queries - self.queries_used)

    @property
    def cells_left(self) -> int:
        return max(0, self.max_released_cells - self.cells_released)

    def near_limit(self, ratio: float) -> bool:
        """True once either budget is at least `ratio` used."""
        return (
            self.queries_used >= ratio * self.max_queries
            or self.cells_released >= ratio * self.max_released_cells
        )

    def record(self, release: ReleasedQuery, cells: int) -> None:
        """Account for a release the caller is about to hand out."""
        self.cells_released += cells
        self.released.append(release)
        if len(self.released) > self.max_history:
            del self.released[: len(self.released) - self.max_history]

    def next_seq(self) -> int:
        return (self.released[-1].seq + 1) if self.released else 1


_SCALARS = tuple(f.name for f in fields(GrantBudget) if f.name != "released")
_RELEASE_FIELDS = tuple(f.name for f in fields(ReleasedQuery))


def _rollup(q: ReleasedQuery, keys: list[str]) -> dict[tuple[Any, ...], int]:
    """Sum individuals per value of `keys` (a subset of q's group keys)."""
    idx = [q.group_keys.index(k) for k in keys]
    out: dict[tuple[Any, ...], int] = defaultdict(int)
    for values, n in q.groups:
        out[tuple(json.dumps(values[i], default=str) for i in idx)] += int(n)
    return out


def differencing_conflicts(budget: GrantBudget, new: ReleasedQuery, k: int) -> list[str]:
    """Reasons `new` could be differenced with an earlier release to learn about fewer than k individuals.

    Rule: for each earlier release over the same tables, roll both up to the group keys they share
    (to the grand total when they share none) and compare the individuals counted in each shared group.
    If a group's populations differ by 1..k-1 individuals, subtracting one release from the other would
    describe that small set whenever one population contains the other, so the new query is refused.
    Equal counts (the same population) are harmless. The rule is a conservative heuristic: it cannot tell
    whether populations are nested, so it also refuses some harmless pairs.
    """
    reasons = []
    for old in budget.released:
        if sorted(old.tables) != sorted(new.tables) or old.digest == new.digest:
            continue
        shared = [key for key in new.group_keys if key in old.group_keys]
        a, b = _rollup(old, shared), _rollup(new, shared)
        close = [g for g in a.keys() & b.keys() if 0 < abs(a[g] - b[g]) < k]
        if close:
            reasons.append(
                f"{len(close)} group(s) differ from released query #{old.seq} by fewer than {k} individuals, "
                "so the two results could be subtracted to reveal a small group; widen or change the filter"
            )
    return reasons
