"""Per-key fixed-window rate limits, in process. Each replica counts its own traffic (documented)."""

from __future__ import annotations

import threading
import time


class RateLimiter:
    """`hit(key, limit)` -> seconds to wait (0 when allowed). Windows of 60 s."""

    def __init__(self, window: float = 60.0, max_keys: int = 100_000) -> None:
        self.window = window
        self.max_keys = max_keys
        self._counts: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, limit: int, *, now: float | None = None, count: bool = True) -> int:
        """Count one hit on `key` (or only check, with count=False); seconds to wait, 0 when within `limit`."""
        t = time.monotonic() if now is None else now
        with self._lock:
            start, n = self._counts.get(key, (t, 0))
            if t - start >= self.window:
                start, n = t, 0
            if not count:
                return max(1, int(self.window - (t - start)) + 1) if n >= limit else 0
            n += 1
            if len(self._counts) >= self.max_keys and key not in self._counts:
                self._evict(t)
            self._counts[key] = (start, n)
            if n > limit:
                return max(1, int(self.window - (t - start)) + 1)
            return 0

    def retry_after(self, key: str, *, now: float | None = None) -> int:
        t = time.monotonic() if now is None else now
        with self._lock:
            start, _ = self._counts.get(key, (t, 0))
        return max(1, int(self.window - (t - start)) + 1)

    def _evict(self, t: float) -> None:
        expired = [k for k, (s, _) in self._counts.items() if t - s >= self.window]
        for k in expired:
            del self._counts[k]
        if len(self._counts) >= self.max_keys:  # still full under attack: forget the oldest half
            for k in sorted(self._counts, key=lambda k: self._counts[k][0])[: self.max_keys // 2]:
                del self._counts[k]
