"""The Merkle tree over the stored log: subtree hashes from stored leaf hashes plus a cache of big subtrees.

Complete aligned subtrees of 2**CACHE_LEVEL leaves or more are stored in `audit_subtree` when a
checkpoint is signed, so a root, inclusion proof or consistency proof over millions of records reads
O(log n) cached nodes and at most two blocks of 256 leaf hashes.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from common.errors import Conflict

from . import merkle
from .models import AuditRecord, Subtree

CACHE_LEVEL = 8  # blocks of 256 leaves
BLOCK = 1 << CACHE_LEVEL
PREFETCH_BLOCKS = 64  # leaves are read up to 16,384 at a time when filling the cache

_REC = AuditRecord.__table__  # type: ignore[attr-defined]
_SUB = Subtree.__table__  # type: ignore[attr-defined]


class TreeView:
    """Hashes of the tree of the first `size` records, read lazily from one session."""

    def __init__(self, session: Session, size: int) -> None:
        self.session = session
        self.size = size
        self._levels: dict[int, list[list[bytes]]] = {}  # block -> per-level hashes inside the block
        self._nodes: dict[tuple[int, int], bytes] = {}
        self.new_nodes: dict[tuple[int, int], bytes] = {}

    def leaves(self, start: int, end: int) -> list[bytes]:
        """Stored leaf hashes of records start+1 .. end (0-based leaf indices [start, end))."""
        rows = self.session.execute(
            select(_REC.c.seq, _REC.c.leaf_hash)
            .where(_REC.c.seq > start, _REC.c.seq <= end)
            .order_by(_REC.c.seq)
        ).all()
        if len(rows) != end - start or (rows and (rows[0].seq != start + 1 or rows[-1].seq != end)):
            raise Conflict(f"the audit log has a gap between records {start + 1} and {end}; verify an export")
        return [bytes.fromhex(r.leaf_hash) for r in rows]

    def _load_blocks(self, first: int) -> None:
        last = min(first + PREFETCH_BLOCKS, -(-self.size // BLOCK))
        hashes = self.leaves(first * BLOCK, min(self.size, last * BLOCK))
        for b in range(first, last):
            if b in self._levels:
                continue
            level = hashes[(b - first) * BLOCK : (b - first + 1) * BLOCK]
            levels = [level]
            while len(level) > 1:
                level = [merkle.node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
                levels.append(level)
            self._levels[b] = levels

    def perfect(self, level: int, idx: int) -> bytes:
        """Hash of the complete subtree of 2**level leaves starting at leaf idx << level."""
        if (idx + 1) << level > self.size:
            raise ValueError(f"subtree ({level}, {idx}) is not complete in a tree of size {self.size}")
        if level < CACHE_LEVEL:
            block = idx >> (CACHE_LEVEL - level)
            if block not in self._levels:
                self._load_blocks(block)
            return self._levels[block][level][idx - (block << (CACHE_LEVEL - level))]
        key = (level, idx)
        if key in self._nodes:
            return self._nodes[key]
        row = self.session.execute(
            select(_SUB.c.hash).where(_SUB.c.level == level, _SUB.c.idx == idx)
        ).first()
        if row is not None:
            value = bytes.fromhex(row.hash)
        elif level == CACHE_LEVEL:
            if idx not in self._levels:
                self._load_blocks(idx)
            value = self._levels.pop(idx)[-1][0]  # cached from now on; drop the block's detail
            self.new_nodes[key] = value
        else:
            value = merkle.node_hash(self.perfect(level - 1, 2 * idx), self.perfect(level - 1, 2 * idx + 1))
            self.new_nodes[key] = value
        self._nodes[key] = value
        return value

    def mth(self, start: int, end: int) -> bytes:
        """RFC 9162 MTH of leaves [start, end)."""
        n = end - start
        if n <= 0:
            return merkle.EMPTY_ROOT
        if n & (n - 1) == 0 and start % n == 0:
            return self.perfect(n.bit_length() - 1, start // n)
        k = merkle.split(n)
        return merkle.node_hash(self.mth(start, start + k), self.mth(start + k, end))

    def root(self) -> bytes:
        return self.mth(0, self.size)

    def save(self) -> None:
        """Store newly computed big subtrees (idempotent: existing rows are left alone)."""
        if not self.new_nodes:
            return
        dialect = self.session.get_bind().dialect.name
        ins = pg_insert(_SUB) if dialect == "postgresql" else sqlite_insert(_SUB)
        rows = [{"level": lv, "idx": i, "hash": h.hex()} for (lv, i), h in sorted(self.new_nodes.items())]
        self.session.execute(ins.on_conflict_do_nothing(index_elements=["level", "idx"]), rows)
        self.new_nodes.clear()
