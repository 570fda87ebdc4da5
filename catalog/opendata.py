"""The open edition as the public sees it: row pages and whole-table downloads, never more.

Only datasets whose open type is unconditional have an open edition (derived and masked at publish time);
every read asks the decision point with raw_grade 1 — the open edition is G1 by construction.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import and_, bindparam
from sqlmodel import Session, select

from catalog import reader, storage
from catalog.models import Dataset, DatasetVersion
from common.actor import Actor
from common.errors import NotFound
from policies import resources
from policies.engine import Context
from policies.guard import allow_or_raise, authorized


@dataclass(frozen=True)
class OpenEdition:
    code: str
    version: int
    path: Path
    digest: str
    rows: int
    published: datetime


_V = DatasetVersion
# Built once: constructing the statement cost as much as running it on this per-request path.
_LOOKUP = (
    select(
        Dataset.code,
        Dataset.owner_org,
        Dataset.category,
        Dataset.grade,
        Dataset.open_type,
        Dataset.share_type,
        Dataset.current_version,
        _V.number,
        _V.open_digest,
        _V.open_rows,
        _V.created_at,
    )
    .select_from(Dataset)
    .outerjoin(_V, and_(_V.dataset_id == Dataset.id, _V.number == Dataset.current_version))
    .where(Dataset.code == bindparam("code"))
)


def _lookup(session: Session, code: str) -> Any:
    """The dataset's policy attributes and its current version's open edition, in one narrow query.

    Per-request hot path: the full Dataset and DatasetVersion rows carry the schema and the quality
    reports as JSON, which two ORM loads decoded on every page (a third of the route's own CPU); it runs
    as a Core statement on the session's connection (the ORM's execution path cost as much again).
    """
    row = session.connection().execute(_LOOKUP, {"code": code}).first()
    if row is None:
        raise NotFound(f"no dataset with code {code!r}")
    return row


def _edition(ds: Any, data_dir: Path) -> OpenEdition:
    if ds.current_version is None:
        raise NotFound(f"dataset {ds.code!r} has no published version yet")
    if ds.number is None:
        raise NotFound(f"dataset {ds.code!r} has no version {ds.current_version}")
    if ds.open_digest is None:
        raise NotFound(f"dataset {ds.code!r} has no open edition")
    return OpenEdition(
        code=ds.code,
        version=ds.number,
        path=storage.open_path(data_dir, ds.code, ds.number),
        digest=ds.open_digest,
        rows=ds.open_rows or 0,
        published=ds.created_at,
    )


def rows(
    session: Session,
    *,
    actor: Actor,
    code: str,
    params: list[tuple[str, str]],
    data_dir: Path,
    cursor_key: bytes,
    max_size: int,
) -> reader.Page:
    """One page of the open edition; filters, sort, fields and cursor come from query parameters."""
    ds = _lookup(session, code)
    with authorized(
        session,
        actor,
        "dataset:read_open",
        resources.dataset(ds),
        Context(raw_grade=1),
        resource_type="dataset",
        resource_id=code,
    ) as act:
        edition = _edition(ds, data_dir)
        query = reader.parse_query(params, reader.columns_of(edition.path))
        if query.limit > max_size:
            query = dataclasses.replace(query, limit=max_size)
        page = reader.read_rows(
            edition.path,
            query,
            cursor_key=cursor_key,
            version=f"{code}/{edition.version}/{edition.digest[:16]}",
        )
        act.dataset_version = edition.version
        act.outcome.update({"rows": len(page.data), "filters": len(query.filters)})
        return page


def download(session: Session, *, actor: Actor, code: str, data_dir: Path) -> tuple[OpenEdition, dict[str, Any]]:
    """Authorise a download now; the caller records the returned audit entry with rows and bytes at the end."""
    ds = _lookup(session, code)
    entry = allow_or_raise(
        actor,
        "dataset:read_open",
        resources.dataset(ds),
        Context(raw_grade=1),
        resource_type="dataset",
        resource_id=code,
        dataset=code,
    )
    return _edition(ds, data_dir), entry
