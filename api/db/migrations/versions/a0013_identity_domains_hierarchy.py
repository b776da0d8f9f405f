"""Keystone leftovers of issue 19: project hierarchies (projects.parent_id), a user's extra attributes
(users.extra: description, email), roles an admin creates (roles.description), domain-scoped tokens
(tokens.domain_id) and role grants on a domain, to a user or a group.

Revision ID: a0013_identity_domains_hierarchy
Revises: a0012_shelved_image
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "a0013_identity_domains_hierarchy"
down_revision: str | None = "a0012_shelved_image"
branch_labels: tuple[str, ...] | None = None
depends_on: tuple[str, ...] | None = None


def upgrade() -> None:
    op.add_column("projects", sa.Column("parent_id", sa.String(length=64), nullable=True))
    op.create_index("ix_projects_parent", "projects", ["parent_id"])
    op.add_column("users", sa.Column("extra", sa.JSON(), nullable=True))
    op.add_column("roles", sa.Column("description", sa.Text(), nullable=True))
    op.add_column("tokens", sa.Column("domain_id", sa.String(length=64), nullable=True))
    for table, actor, actors in (("domain_role_assignments", "user_id", "users"),
                                 ("group_domain_role_assignments", "group_id", "groups")):
        op.create_table(
            table,
            sa.Column(actor, sa.String(length=64), nullable=False),
            sa.Column("domain_id", sa.String(length=64), nullable=False),
            sa.Column("role_id", sa.String(length=64), nullable=False),
            sa.ForeignKeyConstraint([actor], [f"{actors}.id"], ondelete="CASCADE"),
            sa.ForeignKeyConstraint(["domain_id"], ["domains.id"], ondelete="CASCADE"),
            sa.ForeignKeyConstraint(["role_id"], ["roles.id"], ondelete="CASCADE"),
            sa.PrimaryKeyConstraint(actor, "domain_id", "role_id"),
        )
        op.create_index(f"ix_{table}_domain", table, ["domain_id"])


def downgrade() -> None:
    for table in ("group_domain_role_assignments", "domain_role_assignments"):
        op.drop_index(f"ix_{table}_domain", table_name=table)
        op.drop_table(table)
    with op.batch_alter_table("tokens") as batch:
        batch.drop_column("domain_id")
    with op.batch_alter_table("roles") as batch:
        batch.drop_column("description")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("extra")
    op.drop_index("ix_projects_parent", table_name="projects")
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("parent_id")
