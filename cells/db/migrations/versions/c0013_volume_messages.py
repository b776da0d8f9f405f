"""messages (Cinder's user messages) and volumes.capabilities (what a volume type asks of a volume host).

Revision ID: c0013_volume_messages
Revises: c0012_volume_service_state
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c0013_volume_messages"
down_revision: str | None = "c0012_volume_service_state"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    # a cell DB whose conductor made the volume tables from the code's (cells/db/volumes.py) has them already
    inspector = sa.inspect(op.get_bind())
    if "capabilities" not in {c["name"] for c in inspector.get_columns("volumes")}:
        with op.batch_alter_table("volumes") as batch:
            batch.add_column(sa.Column("capabilities", sa.JSON(), nullable=True))
    if not inspector.has_table("messages"):
        op.create_table("messages",
                        sa.Column("id", sa.String(length=36), nullable=False),
                        sa.Column("project_id", sa.String(length=255), nullable=False),
                        sa.Column("request_id", sa.String(length=255), nullable=False),
                        sa.Column("resource_type", sa.String(length=32), nullable=False),
                        sa.Column("resource_uuid", sa.String(length=36), nullable=True),
                        sa.Column("event_id", sa.String(length=64), nullable=False),
                        sa.Column("message_level", sa.String(length=16), nullable=False),
                        sa.Column("user_message", sa.Text(), nullable=False),
                        sa.Column("created_at", sa.String(length=32), nullable=False),
                        sa.Column("expires_at", sa.String(length=32), nullable=False),
                        sa.PrimaryKeyConstraint("id"))
        op.create_index("ix_messages_project_created", "messages", ["project_id", "created_at"], unique=False)
        op.create_index(op.f("ix_messages_expires_at"), "messages", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_messages_expires_at"), table_name="messages")
    op.drop_index("ix_messages_project_created", table_name="messages")
    op.drop_table("messages")
    with op.batch_alter_table("volumes") as batch:
        batch.drop_column("capabilities")
