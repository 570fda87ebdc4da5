"""Per-process budgets for blocking work, so one slow kind of request cannot starve the others.

Blocking handlers share AnyIO's default thread pool (`Settings.threads`, set at start). A sandbox query
holds its thread for its whole run in a worker process; it runs in a small pool of its own instead, and
queries beyond that wait without a thread (in the event loop) for at most the runner's admission wait,
then get 503 sandbox-busy. Fewer threads also means fewer of them contending for the GIL while one of
them holds the database's write lock.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread

T = TypeVar("T")

SANDBOX_THREADS = 4  # two warm workers per process, plus two queries parsing or finishing meanwhile

_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, anyio.CapacityLimiter]] = (
    weakref.WeakKeyDictionary()
)


def _pool(name: str, tokens: int) -> anyio.CapacityLimiter:
    # Limiters belong to an event loop: one set per loop (a server process has one; tests have several).
    pools = _POOLS.setdefault(asyncio.get_running_loop(), {})
    if name not in pools:
        pools[name] = anyio.CapacityLimiter(tokens)
    return pools[name]


async def run_in_pool(
    name: str, tokens: int, fn: Callable[[], T], *, wait_s: float, busy: Callable[[], Exception]
) -> T:
    """Run blocking `fn` on one of `tokens` threads reserved for `name`; raise `busy()` after `wait_s` queued."""
    admission, threads = _pool(name, tokens), _pool(f"{name}:threads", tokens)
    admitted = False
    with anyio.move_on_after(wait_s):
        await admission.acquire()
        admitted = True
    if not admitted:
        raise busy()
    try:
        # Admission caps the callers at `tokens`, so the thread pool of the same size never makes one wait.
        return await anyio.to_thread.run_sync(fn, limiter=threads)
    finally:
        admission.release()
