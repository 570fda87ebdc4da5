"""Fixtures for the reliability suite: one populated gateway per module, in process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.reliability._world import World, database, populate, settings_for


@pytest.fixture(scope="module")
def world(db_template: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The sample libraries published small and a principal per role, shared by a module's tests."""
    from gateway.app import create_app
    from gateway.state import build_state

    tmp = tmp_path_factory.mktemp("world")
    with database(db_template, tmp) as url:
        # Fuzzing sends hundreds of requests a minute from one address: lift the per-minute limits
        # here; the abuse tests check the limits themselves with their own small settings.
        settings = settings_for(tmp, url, anonymous_per_minute=100_000, token_per_minute=100_000)
        state = build_state(settings)
        try:
            who, codes = populate(state)
            app = create_app(settings, state=state)
            yield World(state=state, app=app, data_dir=settings.data_dir, who=who, datasets=codes)
        finally:
            state.engine.dispose()
