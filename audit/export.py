"""Export a range of the log with the signed checkpoints and the Merkle nodes an offline verifier needs.

An export is a directory, or a `.zip` holding the same members (see docs/audit.md):

    manifest.json     {"format": "pdg-audit-export/1", "first_seq", "last_seq", "records",
                       "start_chain" (chain hash of record first_seq-1; zeros for 1)}
    records.jsonl     one line per record, seq order: {"chain":…,"leaf":…,"record":<canonical record>}
    checkpoints.json  [{id, tree_size, root_hash, chain_hash, time, key_id, prev_id, prev_digest,
                        signature, nodes: [[start, end, hash], …]}, …]

`nodes` are the hashes of the leaf ranges [start, end) outside the exported records that the RFC 9162
recursion for that checkpoint's root needs, so every root is recomputed from the exported records.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

from sqlmodel import Session, col
from sqlmodel import select as model_select

from common.errors import Conflict, Invalid

from . import canonical, merkle
from .checkpoints import latest
from .models import AuditRecord, Checkpoint
from .tree import TreeView

FORMAT = "pdg-audit-export/1"
MEMBERS = ("manifest.json", "records.jsonl", "checkpoints.json")
_CHUNK = 10_000


@dataclass(frozen=True)
class ExportSummary:
    path: Path
    first_seq: int
    last_seq: int
    records: int
    checkpoints: int


def boundary_nodes(view: TreeView, lo: int, hi: int) -> list[list[Any]]:
    """Hashes of the maximal ranges outside the known leaves [lo, hi) in the recursion for MTH(0, size)."""
    out: list[list[Any]] = []

    def walk(start: int, end: int) -> None:
        if end <= lo or start >= hi:
            out.append([start, end, view.mth(start, end).hex()])
        elif not (lo <= start and end <= hi):
            k = merkle.split(end - start)
            walk(start, start + k)
            walk(start + k, end)

    if view.size:
        walk(0, view.size)
    return out


_HASHED = tuple(f for f in canonical.RECORD_FIELDS if f not in ("v", "seq", "time"))
_SELECT = f"SELECT seq, {{time}}, leaf_hash, chain_hash, {', '.join(_HASHED)} FROM audit_record " + (
    "WHERE seq > {p} AND seq <= {p} ORDER BY seq LIMIT {p}"
)
# PostgreSQL formats the time itself; SQLite stores SQLAlchemy's text form 'YYYY-MM-DD HH:MM:SS.ffffff'.
_SELECT_PG = _SELECT.format(time="to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')", p="%s")
_SELECT_SQLITE = _SELECT.format(time="time", p="?")


@lru_cache(maxsize=4096)
def _canonical_json(stored: str) -> str:
    # What record_bytes hashes: the stored JSON read back and written canonically (reasons and outcomes
    # repeat a lot, hence the cache).
    return canonical.dumps(json.loads(stored))


def _time_text(value: Any) -> str:
    if isinstance(value, str) and len(value) == 26 and value[10] == " " and value[19] == ".":
        return f"{value[:10]}T{value[11:]}Z"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return canonical.format_time(value)


def _records(session: Session, first: int, last: int) -> Iterator[bytes]:
    """Export lines, read in keyset chunks so a million records never sit in memory at once.

    Plain DB-API and canonical text built directly (canonical.record_head): an ORM row and a json.dumps
    of a dict per record cost ten times more. The bytes are the same as canonical.record_bytes(row).
    """
    conn = session.connection()
    sql = _SELECT_PG if conn.dialect.name == "postgresql" else _SELECT_SQLITE
    cur = conn.connection.cursor()
    try:
        after = first - 1
        while after < last:
            cur.execute(sql, (after, last, _CHUNK))
            rows = cur.fetchall()
            if not rows:
                break
            out = []
            for seq, when, leaf, chain, *hashed in rows:
                fields = dict(zip(_HASHED, hashed, strict=True))
                head = canonical.record_head(
                    fields, _canonical_json(fields["reasons"]), _canonical_json(fields["outcome"])
                )
                out.append(
                    f'{{"chain":"{chain}","leaf":"{leaf}","record":{head}'
                    f"{canonical.record_tail(seq, _time_text(when))}}}\n"
                )
            yield "".join(out).encode()
            after = rows[-1][0]
    finally:
        cur.close()


def export(session: Session, out: Path, *, first_seq: int = 1, last_seq: int | None = None) -> ExportSummary:
    """Write records first_seq..last_seq (default: up to the latest checkpoint) to a directory or .zip."""
    newest = latest(session)
    if newest is None or newest.tree_size == 0:
        raise Conflict("no audit checkpoint covers any record yet; sign a checkpoint, then export")
    last = newest.tree_size if last_seq is None else last_seq
    if not 1 <= first_seq <= last:
        raise Invalid(f"export range must satisfy 1 <= first_seq <= last_seq (got {first_seq}..{last})")
    if last > newest.tree_size:
        raise Conflict(f"records after {newest.tree_size} are not under a signed checkpoint yet; sign one first")
    cps = list(
        session.exec(
            model_select(Checkpoint).where(col(Checkpoint.tree_size) >= first_seq).order_by(col(Checkpoint.id))
        )
    )
    # Keep every checkpoint inside the range and the first one at or beyond its end.
    end_at = next(i for i, c in enumerate(cps) if c.tree_size >= last)
    cps = cps[: end_at + 1]
    start_chain = canonical.GENESIS.hex()
    if first_seq > 1:
        start_chain = session.get(AuditRecord, first_seq - 1).chain_hash  # type: ignore[union-attr]
    cp_objs = []
    for c in cps:
        view = TreeView(session, c.tree_size)
        obj = {k: getattr(c, k) for k in Checkpoint.model_fields}
        obj["time"] = canonical.format_time(c.time)
        obj["nodes"] = boundary_nodes(view, first_seq - 1, min(last, c.tree_size))
        cp_objs.append(obj)
    manifest = {
        "format": FORMAT,
        "first_seq": first_seq,
        "last_seq": last,
        "records": last - first_seq + 1,
        "start_chain": start_chain,
    }
    out = Path(out)
    head_json = {
        "manifest.json": json.dumps(manifest, indent=1).encode(),
        "checkpoints.json": json.dumps(cp_objs, indent=1).encode(),
    }
    with ExitStack() as stack:
        if out.suffix == ".zip":
            out.parent.mkdir(parents=True, exist_ok=True)
            zf = stack.enter_context(zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1))
            for name, data in head_json.items():
                zf.writestr(name, data)
            rec_out: IO[bytes] = stack.enter_context(zf.open("records.jsonl", "w", force_zip64=True))
        else:
            out.mkdir(parents=True, exist_ok=True)
            for name, data in head_json.items():
                (out / name).write_bytes(data)
            rec_out = stack.enter_context((out / "records.jsonl").open("wb"))
        for block in _records(session, first_seq, last):
            rec_out.write(block)
    return ExportSummary(out, first_seq, last, last - first_seq + 1, len(cp_objs))
