"""Catalog search: substring full text (Chinese needs no tokenizer this way), facets, sort, pages.

Candidates are narrowed in SQL (every query term must appear in the dataset's lower-cased search text:
titles, descriptions, keywords, field names and labels), then filtered by the decision point in one
batch (closed datasets stay invisible to everyone but their owner and oversight roles), then faceted.
A catalog holds thousands of datasets, not millions, so facets are counted on the visible set in memory.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session, col, select

from catalog.models import Dataset
from common.actor import Actor
from common.errors import BadRequest
from policies import resources
from policies.guard import decide_many

FACETS = ("category", "department", "grade", "open_type", "update_cycle", "format")
SORTS = {"relevance", "title", "-updated", "updated", "code", "-quality"}
MAX_TERMS = 8


@dataclass
class SearchQuery:
    q: str = ""
    filters: dict[str, str] = field(default_factory=dict)
    sort: str = "relevance"
    page: int = 1
    size: int = 20


@dataclass
class SearchResult:
    items: list[Dataset]
    total: int
    facets: dict[str, dict[str, int]]
    page: int
    size: int


def _formats(ds: Dataset) -> list[str]:
    return ["csv", "ndjson", "parquet"] if ds.open_type == "unconditional" and ds.current_version else []


def _facet_value(ds: Dataset, name: str) -> list[str]:
    if name == "format":
        return _formats(ds)
    return [str(getattr(ds, name))]


def search(session: Session, *, actor: Actor, query: SearchQuery) -> SearchResult:
    """Datasets the actor may see that match `query`, with facet counts over all matches."""
    unknown = set(query.filters) - set(FACETS)
    if unknown:
        raise BadRequest(f"unknown facet filter {sorted(unknown)[0]!r}; use one of {', '.join(FACETS)}")
    if query.sort not in SORTS:
        raise BadRequest(f"sort must be one of {', '.join(sorted(SORTS))}")
    terms = [t for t in query.q.lower().split() if t][:MAX_TERMS]
    stmt = select(Dataset)
    for term in terms:
        escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(col(Dataset.search_text).like(f"%{escaped}%", escape="\\"))
    for name, value in query.filters.items():
        if name != "format":
            stmt = stmt.where(getattr(Dataset, name) == value)
    candidates = list(session.exec(stmt).all())
    decisions = decide_many(actor, "dataset:read_metadata", [resources.dataset(d) for d in candidates])
    visible = [d for d, ok in zip(candidates, decisions, strict=True) if ok.allowed]
    if "format" in query.filters:
        visible = [d for d in visible if query.filters["format"] in _formats(d)]
    facets = {
        name: dict(Counter(v for d in visible for v in _facet_value(d, name)).most_common())
        for name in FACETS
    }
    visible.sort(key=_sort_key(query.sort, terms))
    start = (query.page - 1) * query.size
    return SearchResult(
        items=visible[start : start + query.size],
        total=len(visible),
        facets=facets,
        page=query.page,
        size=query.size,
    )


def _sort_key(sort: str, terms: list[str]) -> Any:
    if sort == "title":
        return lambda d: d.title
    if sort == "code":
        return lambda d: d.code
    if sort == "updated":
        return lambda d: d.updated_at
    if sort == "-updated":
        return lambda d: -d.updated_at.timestamp()
    if sort == "-quality":
        return lambda d: -(d.quality_score or 0.0)
    # relevance: title hits first, then more occurrences, then code for stability
    return lambda d: (
        -sum(t in d.title.lower() for t in terms),
        -sum(d.search_text.count(t) for t in terms),
        d.code,
    )
