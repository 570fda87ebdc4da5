"""Sandbox queries run on their own few threads: a full sandbox turns callers away, it never starves others."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import anyio
import anyio.to_thread
import pytest

from gateway import slots


class Busy(Exception):
    pass


def _run(main):
    """anyio.run on a thread of its own: an earlier test in the same process can leave an event loop
    running in the main thread, where anyio.run refuses to start ("Already running asyncio in this
    thread", seen when these ran after tests/catalog and tests/web on one xdist worker)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(anyio.run, main).result(60)


def test_full_pool_turns_the_next_caller_away_and_leaves_the_default_pool_free():
    release = threading.Event()
    started = threading.Event()

    def slow() -> str:
        started.set()
        release.wait(10)
        return "done"

    async def main() -> tuple[str, str]:
        async with anyio.create_task_group() as tg:
            results: dict[str, str] = {}

            async def first() -> None:
                results["first"] = await slots.run_in_pool("t", 1, slow, wait_s=10, busy=Busy)

            tg.start_soon(first)
            await anyio.to_thread.run_sync(started.wait, 5)
            # The one reserved thread is taken: the next caller waits without a thread, then is turned away.
            with pytest.raises(Busy):
                await slots.run_in_pool("t", 1, lambda: "never", wait_s=0.2, busy=Busy)
            # Ordinary blocking work still gets a thread from the default pool meanwhile.
            other = await anyio.to_thread.run_sync(lambda: "other")
            release.set()
        return results["first"], other

    assert _run(main) == ("done", "other")


def test_a_caller_admitted_after_waiting_runs_to_completion():
    gate = threading.Event()

    def hold() -> int:
        gate.wait(10)
        return 1

    async def main() -> list[int]:
        out: list[int] = []

        async def call(fn) -> None:
            out.append(await slots.run_in_pool("u", 1, fn, wait_s=5, busy=Busy))

        async with anyio.create_task_group() as tg:
            tg.start_soon(call, hold)
            await anyio.sleep(0.1)
            tg.start_soon(call, lambda: 2)  # queued behind `hold`, admitted once it finishes
            await anyio.sleep(0.1)
            gate.set()
        return out

    assert _run(main) == [1, 2]


def test_a_busy_sandbox_answers_503_with_retry_after(client, make_principal, monkeypatch):
    async def always_busy(name, tokens, fn, *, wait_s, busy):
        raise busy()

    monkeypatch.setattr(slots, "run_in_pool", always_busy)
    ent = make_principal("enterprise")
    r = client.post("/api/v1/sandbox/workspaces/1/queries", headers=ent.headers, json={"sql": "select 1"})
    assert r.status_code == 503
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"].endswith("sandbox-busy") and "retry" in r.json()["detail"]
    assert r.headers["Retry-After"] == "5"
