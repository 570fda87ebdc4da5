"""Alembic environment: runs on the connection handed over by gateway.db.upgrade()."""

from __future__ import annotations

import contextlib
import importlib

from alembic import context
from sqlmodel import SQLModel

# Every package that defines tables, so autogenerate sees the whole schema.
MODEL_MODULES = ("identity.models", "audit.models", "catalog.models", "sandbox.models", "datarange.models")
for _module in context.config.attributes.get("model_modules", MODEL_MODULES):
    with contextlib.suppress(ModuleNotFoundError):  # a layer without tables yet
        importlib.import_module(_module)

target_metadata = SQLModel.metadata


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        from gateway.db import make_engine
        from gateway.settings import get_settings

        engine = make_engine(get_settings().db_url)
        with engine.begin() as conn:
            _migrate(conn)
        return
    _migrate(connection)


def _migrate(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run()
