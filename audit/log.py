"""Append one record to the chained log, in the caller's transaction (the caller commits).

Serialisation (so many writers leave one gap-free chain):
- PostgreSQL: `pg_advisory_xact_lock(LOCK_KEY)` before the head is read; it is held until the caller's
  transaction ends, so commits happen in `seq` order and committed records are always a prefix 1..n.
  Needs READ COMMITTED (PostgreSQL's default) so the head read after the lock sees the last commit.
- SQLite: the caller's transaction must already hold the write lock, i.e. be opened with
  `BEGIN IMMEDIATE` (the gateway's write sessions are); a deferred transaction could read a stale head
  and then fail with SQLITE_BUSY on insert (an error, never a forked chain: `seq` is the primary key).
`append` reads the head every time. `append_after_commit` (PostgreSQL, used by the group commit) takes
the head its caller last wrote and has the database check it in the same round trip as the INSERT.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import select, text
from sqlmodel import Session

from common import clock
from common.actor import Actor
from common.errors import Invalid
from gmcrypto import sm3

from . import canonical
from .models import AuditEntry, AuditRecord

LOCK_KEY = 0x5044475F41554454  # "PDG_AUDT": the one advisory lock every audit writer takes
MAX_OUTCOME_BYTES = 4096

_TABLE = AuditRecord.__table__  # type: ignore[attr-defined]
_HEAD = select(_TABLE.c.seq, _TABLE.c.chain_hash).order_by(_TABLE.c.seq.desc()).limit(1)
_COLUMNS = tuple(c.name for c in _TABLE.columns)
_HEAD_SQL = "SELECT seq, chain_hash FROM audit_record ORDER BY seq DESC LIMIT 1"
_PG_LOCK = "SELECT pg_advisory_xact_lock(%s)"
ROWS_PER_INSERT = 256  # 256 rows x 21 columns stays under SQLite's 32,766 bound parameters


@lru_cache(maxsize=64)
def _insert_sql(mark: str, rows: int) -> str:
    """One INSERT of `rows` rows. On SQLite a batch is then one statement, so one release of the GIL
    (sqlite3 releases it per step; executemany steps, and so waits to get it back, once per row)."""
    one = f"({', '.join(mark for _ in _COLUMNS)})"
    return f"INSERT INTO audit_record ({', '.join(_COLUMNS)}) VALUES {', '.join(one for _ in range(rows))}"


_LIMITS = {
    "action": 100,
    "resource_type": 50,
    "resource_id": 300,
    "dataset": 200,
    "policy_version": 100,
    "scenario": 100,
    "experiment": 100,
    "purpose": 500,
}


def lock(session: Session) -> None:
    """Take the append lock until the transaction ends (PostgreSQL; SQLite relies on BEGIN IMMEDIATE)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})


def head(session: Session) -> tuple[int, bytes]:
    """(last seq, its chain hash), or (0, genesis) for an empty log."""
    row = session.execute(_HEAD).first()
    if row is None:
        return 0, canonical.GENESIS
    return int(row.seq), bytes.fromhex(row.chain_hash)


def _text(name: str, value: Any, *, required: bool) -> str | None:
    if value is None or value == "":
        if required:
            raise Invalid(f"audit record needs a non-empty {name}")
        return None if value is None else ""
    if not isinstance(value, str):
        raise Invalid(f"audit {name} must be text, got {type(value).__name__}")
    if len(value) > _LIMITS.get(name, 200):
        raise Invalid(f"audit {name} is longer than {_LIMITS.get(name, 200)} characters")
    return value


_PLAIN = (str, int, float, bool, type(None))


def _json_part(name: str, value: Any) -> str:
    try:
        encoded = canonical.dumps(value)
        # The stored text is what gets hashed, so it must read back to itself: a dict with non-text keys
        # (json turns 1 into "1", sorting before the conversion) is canonicalised once more.
        if not _plain(value):
            encoded = canonical.dumps(json.loads(encoded))
    except (TypeError, ValueError) as exc:
        raise Invalid(f"audit {name} must be plain JSON (str, int, float, bool, None, list, dict): {exc}") from None
    if len(encoded.encode()) > MAX_OUTCOME_BYTES:
        raise Invalid(f"audit {name} is larger than {MAX_OUTCOME_BYTES} bytes; record counts and digests only")
    return encoded


def _plain(value: Any) -> bool:
    """A list of scalars or a dict of text keys to scalars: canonical JSON of it is a fixed point."""
    if isinstance(value, dict):
        return all(type(k) is str and isinstance(v, _PLAIN) for k, v in value.items())
    return isinstance(value, list) and all(isinstance(v, _PLAIN) for v in value)


class Prepared:
    """A validated record waiting for its place in the log: its columns (all but seq, time and the
    hashes) and an SM3 state that has already absorbed 0x00 and the canonical text before `"seq"`, so
    appending costs one short hash per record under the append lock."""

    __slots__ = ("leaf_state", "row")

    def __init__(self, row: dict[str, Any]) -> None:
        self.row = row
        head = canonical.record_head(row, row["reasons"], row["outcome"])
        self.leaf_state = sm3.state(b"\x00" + head.encode())


def prepare(
    *,
    actor: Actor,
    action: str,
    resource_type: str,
    resource_id: str,
    allowed: bool,
    reasons: Iterable[str] = (),
    policy_version: str = "",
    scenario: str | None = None,
    experiment: str | None = None,
    purpose: str | None = None,
    outcome: Mapping[str, Any] | None = None,
    dataset: str | None = None,
    dataset_version: int | None = None,
) -> Prepared:
    """Validate one record (raises Invalid) and do its hashing work that needs no place in the log."""
    if not isinstance(allowed, bool):
        raise Invalid("audit `allowed` must be true or false")
    reason_list = list(reasons)
    if not all(isinstance(r, str) for r in reason_list):
        raise Invalid("audit reasons must be rule ids (text)")
    if outcome is not None and not isinstance(outcome, Mapping):
        raise Invalid("audit outcome must be an object")
    if dataset is None and resource_type == "dataset":
        dataset = resource_id
    if dataset_version is not None and (isinstance(dataset_version, bool) or not isinstance(dataset_version, int)):
        raise Invalid("audit dataset_version must be an integer")
    return Prepared(
        {
            "principal": _text("principal", actor.principal, required=True),
            "org": actor.org,
            "role": actor.role,
            "action": _text("action", action, required=True),
            "resource_type": _text("resource_type", resource_type, required=True),
            "resource_id": _text("resource_id", resource_id, required=True),
            "dataset": _text("dataset", dataset, required=False),
            "dataset_version": dataset_version,
            "allowed": allowed,
            "reasons": _json_part("reasons", reason_list),
            "policy_version": _text("policy_version", policy_version, required=False) or "",
            "scenario": _text("scenario", scenario, required=False),
            "experiment": _text("experiment", experiment, required=False),
            "purpose": _text("purpose", purpose, required=False),
            "request_id": (actor.request_id or None) and actor.request_id[:100],
            "client_addr": (actor.client_addr or None) and actor.client_addr[:100],
            "outcome": _json_part("outcome", dict(outcome or {})),
        }
    )


def _chain(
    items: Sequence[Prepared], seq: int, chain: bytes, *, sqlite: bool
) -> tuple[list[dict[str, Any]], list[Any]]:
    """Number and chain `items` after the record (seq, chain): the rows and the INSERT's parameters."""
    when = clock.as_utc(clock.now())
    time_text = canonical.format_time(when)
    # stored as SQLAlchemy's SQLite DateTime stores it (naive UTC); PostgreSQL takes the datetime
    stored_time = when.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else when
    link = sm3.state()
    rows, params = [], []
    for item in items:
        seq += 1
        h = item.leaf_state.copy()
        h.update(canonical.record_tail(seq, time_text).encode())
        leaf = h.digest()
        h = link.copy()
        h.update(chain + leaf)
        chain = h.digest()
        row = {**item.row, "seq": seq, "time": when, "leaf_hash": leaf.hex(), "chain_hash": chain.hex()}
        rows.append(row)
        params.extend([stored_time if c == "time" else row[c] for c in _COLUMNS])
    return rows, params


def _pg_insert(cur: Any, params: list[Any]) -> None:
    """psycopg pipelines executemany (no round trip of its own) and parses the query once."""
    n = len(_COLUMNS)
    cur.executemany(_insert_sql("%s", 1), [params[i : i + n] for i in range(0, len(params), n)])


def append(session: Session, items: Sequence[Prepared]) -> list[dict[str, Any]]:
    """Append prepared records, in order, in the caller's transaction (the caller commits); returns the
    rows written. One head read, one timestamp and one multi-row INSERT for the whole batch."""
    if not items:
        return []
    conn = session.connection()  # the caller's transaction (BEGIN IMMEDIATE on SQLite)
    cur = conn.connection.cursor()  # plain DB-API: the ORM's per-statement overhead would dominate
    postgres = conn.dialect.name == "postgresql"
    try:
        if postgres:
            # Lock, then read the head: two statements (the head's snapshot must postdate the lock), sent
            # in one pipeline so they cost one round trip — a round trip is also a wait for the GIL.
            with conn.connection.driver_connection.pipeline():
                cur.execute(_PG_LOCK, (LOCK_KEY,))
                head_cur = conn.connection.cursor()
                head_cur.execute(_HEAD_SQL)
            top = head_cur.fetchone()
            head_cur.close()
        else:
            cur.execute(_HEAD_SQL)
            top = cur.fetchone()
        seq = top[0] if top else 0
        chain = bytes.fromhex(top[1]) if top else canonical.GENESIS
        rows, params = _chain(items, seq, chain, sqlite=not postgres)
        if postgres:
            _pg_insert(cur, params)
            return rows
        width = len(_COLUMNS) * ROWS_PER_INSERT
        for at in range(0, len(params), width):
            part = params[at : at + width]
            cur.execute(_insert_sql("?", len(part) // len(_COLUMNS)), part)
    finally:
        cur.close()
    return rows


class StaleHead(Exception):
    """The head the caller remembered is no longer the log's head; nothing was written."""


# Fails (division by zero) unless the record (seq, chain_hash) is in the log: the one way to make a
# pipelined statement refuse on a condition without a function of our own in the database.
_PG_EXPECT = "SELECT 1 / (SELECT count(*) FROM audit_record WHERE seq = %s AND chain_hash = %s)::int"
_STALE_STATES = {"23505", "22012"}  # unique violation on seq, or the expected head is not in the log


def append_after_commit(pg: Any, items: Sequence[Prepared], seq: int, chain: bytes) -> list[dict[str, Any]]:
    """PostgreSQL: append `items` after the record the caller last saw at the head (seq, chain) and commit,
    in one round trip (lock, head check, INSERT and COMMIT sent as one pipeline on the idle psycopg
    connection `pg`), where `append` + commit takes three.

    The head is checked, not read: under the lock, committed records are always the gap-free prefix 1..n
    and never change, so if record `seq` has hash `chain` and the INSERT of seq+1 passes the primary key,
    (seq, chain) is the head. If another writer appended meanwhile, nothing is written and StaleHead is
    raised: the caller appends again the usual way (`append`, which reads the head under the lock).
    """
    rows, params = _chain(items, seq, chain, sqlite=False)
    try:
        with pg.pipeline():
            cur = pg.cursor()
            cur.execute(_PG_LOCK, (LOCK_KEY,))
            cur.execute(_PG_EXPECT, (seq, chain.hex()))
            _pg_insert(cur, params)
            pg.commit()
    except BaseException as exc:
        pg.rollback()
        if getattr(exc, "sqlstate", None) in _STALE_STATES:
            raise StaleHead(f"the log's head is past {seq}") from exc
        raise
    return rows


def record(
    session: Session,
    *,
    actor: Actor,
    action: str,
    resource_type: str,
    resource_id: str,
    allowed: bool,
    reasons: Iterable[str] = (),
    policy_version: str = "",
    scenario: str | None = None,
    experiment: str | None = None,
    purpose: str | None = None,
    outcome: Mapping[str, Any] | None = None,
    dataset: str | None = None,
    dataset_version: int | None = None,
) -> AuditEntry:
    """Append one record to the log in the caller's transaction; returns what was written (read-only).

    `dataset` defaults to `resource_id` when `resource_type == "dataset"`, so
    searches and per-dataset counts see it; pass it explicitly for grants, queries and exports about a
    dataset. `outcome` holds counts, sizes, digests and flags (e.g. {"rows": 10, "grade": "G3"}) —
    never raw values.
    """
    item = prepare(
        actor=actor,
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        allowed=allowed,
        reasons=reasons,
        policy_version=policy_version,
        scenario=scenario,
        experiment=experiment,
        purpose=purpose,
        outcome=outcome,
        dataset=dataset,
        dataset_version=dataset_version,
    )
    return AuditEntry(**append(session, [item])[0])
