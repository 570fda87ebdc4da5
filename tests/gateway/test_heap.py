"""A serving process leaves its start-up heap out of garbage collection (common.heap.freeze_startup_heap
says why: full collections walking it stalled every request in flight for 140-210 ms)."""

from __future__ import annotations

import gc

from fastapi.testclient import TestClient


def test_a_serving_worker_freezes_its_heap_at_start_and_an_app_in_tests_does_not(app) -> None:
    gc.unfreeze()
    with TestClient(app):
        assert gc.get_freeze_count() == 0  # create_app alone: tests' heaps come and go
    app.state.freeze_heap = True  # as create_app_from_env marks the app of a `pdg serve` worker
    try:
        with TestClient(app):
            frozen = gc.get_freeze_count()
        assert frozen > 10_000  # the modules, routes and validators loaded by then
    finally:
        gc.unfreeze()


def test_create_app_from_env_marks_the_app_of_a_serving_process(settings, monkeypatch) -> None:
    import gateway.app

    monkeypatch.setattr(gateway.app, "get_settings", lambda: settings)
    monkeypatch.setattr("gateway.logs.configure", lambda level: None)  # leave the tests' logging alone
    assert gateway.app.create_app_from_env().state.freeze_heap is True
