"""Autogenerate the next Alembic migration from the models (developer tool).

    .venv/bin/python scripts/new_migration.py "sandbox: requests, grants" 0004

Upgrades a scratch SQLite database to head, diffs it against the model modules listed in
gateway/migrations/env.py (MODEL_MODULES), writes the revision
into gateway/migrations/versions/. Read and tidy the result before committing (e.g. triggers).
"""

from __future__ import annotations

import sys
import tempfile

from alembic import command

from gateway import db


def main(message: str, rev_id: str) -> None:
    engine = db.make_engine("sqlite:///" + tempfile.mkdtemp() + "/scratch.db")
    db.upgrade(engine)
    with engine.begin() as conn:
        command.revision(db.alembic_config(conn), message=message, autogenerate=True, rev_id=rev_id)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
