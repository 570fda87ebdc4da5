"""sandbox: access requests, grants, queries, export packages

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 02:44:54.207087
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sandbox_request",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("requester", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("requester_org", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("requester_role", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("datasets", sa.JSON(), nullable=False),
        sa.Column("columns", sa.JSON(), nullable=False),
        sa.Column("owners", sa.JSON(), nullable=False),
        sa.Column("purpose", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("purpose_text", sa.Text(), nullable=False),
        sa.Column("duration_days", sa.Integer(), nullable=False),
        sa.Column("intended_outputs", sa.JSON(), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("decisions", sa.JSON(), nullable=False),
        sa.Column("grant_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("sandbox_request", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sandbox_request_requester"), ["requester"], unique=False)
        batch_op.create_index(batch_op.f("ix_sandbox_request_requester_org"), ["requester_org"], unique=False)
        batch_op.create_index(batch_op.f("ix_sandbox_request_state"), ["state"], unique=False)

    op.create_table(
        "sandbox_grant",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=True),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("org", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("requester", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("datasets", sa.JSON(), nullable=False),
        sa.Column("columns", sa.JSON(), nullable=False),
        sa.Column("purpose", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("starts_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("expires_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("revoked_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("revoked_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("revoke_reason", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column("pseudonym_key", sa.LargeBinary(), nullable=False),
        sa.Column("budget", sa.JSON(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["sandbox_request.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("sandbox_grant", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sandbox_grant_org"), ["org"], unique=False)
        batch_op.create_index(batch_op.f("ix_sandbox_grant_request_id"), ["request_id"], unique=False)

    op.create_table(
        "sandbox_query",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("grant_id", sa.Integer(), nullable=False),
        sa.Column("principal", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("org", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("sql_text", sa.Text(), nullable=False),
        sa.Column("sql_digest", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("tables", sa.JSON(), nullable=False),
        sa.Column("columns", sa.JSON(), nullable=False),
        sa.Column("versions", sa.JSON(), nullable=False),
        sa.Column("rows_scanned", sa.Integer(), nullable=True),
        sa.Column("rows_returned", sa.Integer(), nullable=True),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("decision", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("output_grade", sa.Integer(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("elapsed_ms", sa.Float(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("finished_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["grant_id"],
            ["sandbox_grant.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("sandbox_query", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sandbox_query_grant_id"), ["grant_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_sandbox_query_status"), ["status"], unique=False)

    op.create_table(
        "sandbox_export",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("query_id", sa.Integer(), nullable=False),
        sa.Column("grant_id", sa.Integer(), nullable=False),
        sa.Column("requested_by", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("org", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("format", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("package_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("path", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("digest", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("cells", sa.Integer(), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("reviewer", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("review_reason", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("reviewed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["grant_id"],
            ["sandbox_grant.id"],
        ),
        sa.ForeignKeyConstraint(
            ["query_id"],
            ["sandbox_query.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("sandbox_export", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sandbox_export_grant_id"), ["grant_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_sandbox_export_query_id"), ["query_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_sandbox_export_state"), ["state"], unique=False)



def downgrade() -> None:
    with op.batch_alter_table("sandbox_export", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sandbox_export_state"))
        batch_op.drop_index(batch_op.f("ix_sandbox_export_query_id"))
        batch_op.drop_index(batch_op.f("ix_sandbox_export_grant_id"))

    op.drop_table("sandbox_export")
    with op.batch_alter_table("sandbox_query", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sandbox_query_status"))
        batch_op.drop_index(batch_op.f("ix_sandbox_query_grant_id"))

    op.drop_table("sandbox_query")
    with op.batch_alter_table("sandbox_grant", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sandbox_grant_request_id"))
        batch_op.drop_index(batch_op.f("ix_sandbox_grant_org"))

    op.drop_table("sandbox_grant")
    with op.batch_alter_table("sandbox_request", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sandbox_request_state"))
        batch_op.drop_index(batch_op.f("ix_sandbox_request_requester_org"))
        batch_op.drop_index(batch_op.f("ix_sandbox_request_requester"))

    op.drop_table("sandbox_request")
