"""Database guards: triggers that refuse UPDATE, DELETE (and TRUNCATE) on the append-only audit tables.

Call `install_guards(connection)` once after the tables exist (from the Alembic migration, or after
`SQLModel.metadata.create_all` in tests). It is idempotent. A database superuser can still drop the
triggers; that is what the signed checkpoints are for — tampering then fails verification.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection

GUARDED = ("audit_record", "audit_checkpoint", "audit_subtree")

_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% on % refused: the audit log is append-only', TG_OP, TG_TABLE_NAME
    USING ERRCODE = 'insufficient_privilege';
END
$$
"""


def install_guards(connection: Connection) -> None:
    """Create the append-only triggers on SQLite or PostgreSQL."""
    dialect = connection.dialect.name
    if dialect == "postgresql":
        connection.execute(text(_PG_FUNCTION))
        for table in GUARDED:
            connection.execute(
                text(
                    f"CREATE OR REPLACE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                    "FOR EACH ROW EXECUTE FUNCTION audit_refuse_change()"
                )
            )
            connection.execute(
                text(
                    f"CREATE OR REPLACE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                    "FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change()"
                )
            )
    elif dialect == "sqlite":
        for table in GUARDED:
            for op in ("UPDATE", "DELETE"):
                connection.execute(
                    text(
                        f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
                        f"BEGIN SELECT RAISE(ABORT, '{op} on {table} refused: the log is append-only'); "
                        "END"
                    )
                )
    else:
        raise NotImplementedError(f"no audit guards for the {dialect} dialect")


def drop_guards(connection: Connection) -> None:
    """Remove the triggers (only for an Alembic downgrade)."""
    dialect = connection.dialect.name
    for table in GUARDED:
        if dialect == "postgresql":
            connection.execute(text(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}"))
            connection.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}"))
        else:
            for op in ("update", "delete"):
                connection.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_{op}"))
    if dialect == "postgresql":
        connection.execute(text("DROP FUNCTION IF EXISTS audit_refuse_change()"))
