"""Exports: seal a released query result for the enterprise's SM2 key; review above a threshold; download.

A package is written to <data>/exports/ under a temporary name, fsynced and renamed into place before the
export row commits (a rollback removes it). Exports with more than REVIEW_ROWS rows or REVIEW_CELLS cells
wait for an operator's review (two-person rule: the reviewer is never the requester); REVIEW_ALWAYS sends
every export to review.
"""

from __future__ import annotations

import csv
import io
import os
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlmodel import Session, select

import identity
from catalog import storage
from common import clock
from common.actor import Actor
from common.errors import Conflict, Invalid, NotFound
from gmcrypto import sm3
from gmcrypto.errors import CryptoError
from gmcrypto.package import seal_package
from gmcrypto.sm2 import PublicKey
from policies import resources
from policies.guard import decide
from sandbox import grants
from sandbox.models import Export, Query

REVIEW_ROWS = 100
REVIEW_CELLS = 500
REVIEW_ALWAYS = False
FORMATS = ("csv", "parquet")
EXPORTS_DIR = "exports"


def get(session: Session, export_id: int, *, for_update: bool = False) -> Export:
    stmt = select(Export).where(Export.id == export_id)
    if for_update:
        stmt = stmt.with_for_update(key_share=True)  # FOR NO KEY UPDATE: FK checks of child rows go on
    e = session.exec(stmt).first()
    if e is None:
        raise NotFound(f"no export with id {export_id}")
    return e


def needs_review(rows: int, cells: int) -> bool:
    return REVIEW_ALWAYS or rows > REVIEW_ROWS or cells > REVIEW_CELLS


def payload(result: dict[str, Any], fmt: str) -> bytes:
    """The released result as CSV (UTF-8, header row) or Parquet bytes."""
    cols, rows = result["columns"], result["rows"]
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        w.writerows(rows)
        return buf.getvalue().encode("utf-8")
    table = pa.table({c: [r[i] for r in rows] for i, c in enumerate(cols)})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _context(session: Session, q: Query, g: Any, **extra: Any) -> tuple[dict[str, Any], Any]:
    datasets = grants.datasets_of(session, q.tables)
    by_ds = grants.columns_by_dataset(q.columns)

    def ctx(code: str) -> Any:
        return grants.context(
            g,
            columns=[grants.qualified(code, c) for c in by_ds.get(code, [])],
            raw_grade=q.output_grade,
            **extra,
        )

    return datasets, ctx


def _recipient(session: Session, org_code: str) -> PublicKey:
    org = identity.get_organisation(session, org_code)
    if not org.sm2_public_key_pem:
        raise Conflict(
            f"organisation {org_code!r} has no registered SM2 public key; ask the operator to onboard it with one"
        )
    try:
        return PublicKey.from_pem(org.sm2_public_key_pem.encode())
    except CryptoError:
        raise Conflict(f"the SM2 key registered for {org_code!r} is unusable; register a new one") from None


def create_export(session: Session, *, actor: Actor, query_id: int, fmt: str, keyring: Any, data_dir: Path) -> Export:
    """Seal a released result into a package for the grant holder's key; large ones wait for review."""
    if fmt not in FORMATS:
        raise Invalid(f"format must be one of {', '.join(FORMATS)}")
    q = session.get(Query, query_id)
    if q is None:
        raise NotFound(f"no query with id {query_id}")
    g = grants.get(session, q.grant_id)
    datasets, ctx = _context(session, q, g)
    with grants.authorized_each(
        session,
        actor,
        "export:create",
        datasets,
        ctx,
        resource_type="export",
        resource_id=f"query:{query_id}",
        purpose=g.purpose,
        grant=g,
    ) as outcome:
        if q.status != "released" or q.result is None:
            raise Conflict(
                f"query {query_id} was not released by output control ({q.status}); "
                "only released results can be exported"
            )
        recipient = _recipient(session, g.org)
        data = payload(q.result, fmt)
        rows, cells = len(q.result["rows"]), len(q.result["rows"]) * len(q.result["columns"])
        e = Export(
            query_id=query_id,
            grant_id=g.id or 0,
            requested_by=actor.principal,
            org=actor.org or "",
            format=fmt,
            package_id="",
            path="",
            digest="",
            size=0,
            rows=rows,
            cells=cells,
            state="pending_review" if needs_review(rows, cells) else "released",
            created_at=clock.now(),
        )
        session.add(e)
        session.flush()
        refs = {
            "export": e.id,
            "query": query_id,
            "grant": g.id,
            "org": g.org,
            "sql_digest": q.sql_digest,
            "format": fmt,
        }
        rel, manifest, digest, size = _write_package(session, data_dir, e.id or 0, data, recipient, keyring, refs)
        e.package_id, e.path, e.digest, e.size = manifest.package_id, rel, digest, size
        session.add(e)
        outcome.update(
            {
                "export": e.id,
                "query": query_id,
                "package": e.package_id,
                "digest": digest,
                "size": size,
                "rows": rows,
                "cells": cells,
                "state": e.state,
            }
        )
    return e


def _write_package(
    session: Session,
    data_dir: Path,
    export_id: int,
    data: bytes,
    recipient: PublicKey,
    keyring: Any,
    refs: dict[str, Any],
) -> tuple[str, Any, str, int]:
    root = data_dir / EXPORTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{uuid.uuid4().hex}"
    try:
        with open(tmp, "wb") as out:
            manifest = seal_package(io.BytesIO(data), out, recipient=recipient, signer=keyring, references=refs)
            out.flush()
            os.fsync(out.fileno())
        final = root / f"{export_id}-{manifest.package_id}.pdgpkg"
        os.replace(tmp, final)
        storage.fsync_dir(root)
    finally:
        tmp.unlink(missing_ok=True)
    session.info.setdefault("on_rollback", []).append(lambda: final.unlink(missing_ok=True))
    return f"{EXPORTS_DIR}/{final.name}", manifest, sm3.hexdigest(final.read_bytes()), final.stat().st_size


def review_export(session: Session, *, actor: Actor, export_id: int, release: bool, reason: str = "") -> Export:
    """Release or refuse an export held for review (never by its requester or the requester's organisation)."""
    e = get(session, export_id, for_update=True)
    q = session.get(Query, e.query_id)
    assert q is not None
    g = grants.get(session, e.grant_id)
    datasets, ctx = _context(session, q, g, requester=e.requested_by, requester_org=e.org, requester_role="enterprise")
    with grants.authorized_each(
        session,
        actor,
        "export:review",
        datasets,
        ctx,
        resource_type="export",
        resource_id=str(export_id),
        purpose=g.purpose,
    ) as outcome:
        reason = (reason or "").strip()
        if len(reason) > grants.MAX_REASON or (not release and not reason):
            raise Invalid(f"refusing an export needs a reason (1..{grants.MAX_REASON} characters)")
        if e.state != "pending_review":
            raise Conflict(f"export {export_id} is {e.state}, not waiting for review")
        e.state = "released" if release else "refused"
        e.reviewer, e.review_reason, e.reviewed_at = actor.principal, reason or None, clock.now()
        session.add(e)
        outcome.update({"export": export_id, "decision": e.state, "digest": e.digest})
    return e


def download_export(session: Session, *, actor: Actor, export_id: int, data_dir: Path) -> tuple[Export, Path]:
    """The released package's path, for the enterprise whose grant it was made under."""
    e = get(session, export_id)
    q = session.get(Query, e.query_id)
    assert q is not None
    g = grants.get(session, e.grant_id)
    datasets, ctx = _context(session, q, g)
    with grants.authorized_each(
        session,
        actor,
        "export:download",
        datasets,
        ctx,
        resource_type="export",
        resource_id=str(export_id),
        purpose=g.purpose,
        grant=g,
    ) as outcome:
        if e.state != "released":
            raise Conflict(f"export {export_id} is {e.state}; it can be downloaded once released")
        path = data_dir / e.path
        if not path.is_file() or sm3.hexdigest(path.read_bytes()) != e.digest:
            raise Conflict(f"the package of export {export_id} is missing or damaged; create a new export")
        outcome.update({"export": export_id, "digest": e.digest, "size": e.size})
    return e, path


def list_exports(session: Session, *, actor: Actor, state: str | None = None) -> list[Export]:
    """Exports the caller could act on: its organisation's own (download), or those it may review.

    The decision point filters the listing (review for operators and departments, download for the
    requesting enterprise); listing itself changes nothing, so it is not recorded one by one.
    """
    stmt = select(Export)
    reviewer = actor.role in ("operator", "department")
    if reviewer:
        stmt = stmt.where(Export.state == (state or "pending_review"))
    else:
        stmt = stmt.where(Export.org == (actor.org or ""))
        if state:
            stmt = stmt.where(Export.state == state)
    action = "export:review" if reviewer else "export:download"
    out = []
    for e in session.exec(stmt.order_by(Export.id)).all():  # type: ignore[arg-type]
        q = session.get(Query, e.query_id)
        g = grants.get(session, e.grant_id)
        if q is None:
            continue
        extra = {"requester": e.requested_by, "requester_org": e.org, "requester_role": "enterprise"}
        datasets, ctx = _context(session, q, g, **(extra if reviewer else {}))
        if datasets and all(decide(actor, action, resources.dataset(ds), ctx(code)).allowed
                            for code, ds in datasets.items()):
            out.append(e)
    return out


def to_out(e: Export) -> dict[str, Any]:
    return {
        "id": e.id,
        "query_id": e.query_id,
        "grant_id": e.grant_id,
        "requested_by": e.requested_by,
        "org": e.org,
        "format": e.format,
        "package_id": e.package_id,
        "digest": e.digest,
        "size": e.size,
        "rows": e.rows,
        "cells": e.cells,
        "state": e.state,
        "reviewer": e.reviewer,
        "review_reason": e.review_reason,
        "created_at": e.created_at,
        "reviewed_at": e.reviewed_at,
    }
