"""The worker's warm tables: decoded Arrow columns kept between queries of one grant, within a byte budget.

An entry is keyed by (grant id, dataset code, version number, content digest): a query under another
grant, or over another version, never matches it. Each job still gets a fresh DuckDB connection that
sees only the columns that job asked for (a zero-copy projection of the entry), never the entry itself.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

# (grant id, dataset code, version number, content digest of that version)
CacheKey = tuple[int, str, int, str]


class TableCache:
    """Least-recently-used Arrow tables, at most `budget_bytes` in all (an entry larger than that is not kept)."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[CacheKey, Any] = OrderedDict()  # key -> pyarrow.Table

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self._entries.values())

    def get(self, key: CacheKey, columns: list[str]) -> Any | None:
        """Exactly `columns` of the entry (zero-copy), or None unless the entry holds all of them."""
        table = self._entries.get(key)
        if table is None or not set(columns) <= set(table.column_names):
            return None
        self._entries.move_to_end(key)
        return table.select(columns)

    def put(self, key: CacheKey, table: Any) -> None:
        """Keep `table`'s columns under `key` (added to the columns already held), then enforce the budget."""
        for other in [k for k in self._entries if k[:2] == key[:2] and k != key]:
            del self._entries[other]  # an older version of the dataset for this grant is never read again
        held = self._entries.pop(key, None)
        if held is not None and held.num_rows == table.num_rows:
            for name in held.column_names:
                if name not in table.column_names:
                    table = table.append_column(held.field(name), held.column(name))
        if table.nbytes > self.budget_bytes:
            return  # would push out everything else and still not fit: used for this job only
        self._entries[key] = table
        while self._entries and self.nbytes > self.budget_bytes:
            self._entries.popitem(last=False)

    def drop_grants(self, grant_ids: set[int]) -> None:
        """Forget every entry of these grants (revoked or expired)."""
        for key in [k for k in self._entries if k[0] in grant_ids]:
            del self._entries[key]

    def listing(self) -> list[tuple[CacheKey, tuple[str, ...]]]:
        """What is held, for the parent's routing: each key with its columns."""
        return [(k, tuple(t.column_names)) for k, t in self._entries.items()]
