"""Alembic environment of the api DBs, run by cells/db/migrate.py with the connection it opened (its
write lock held): Alembic here never opens a DB of its own, and there is no alembic.ini."""
from __future__ import annotations

from alembic import context

config = context.config
connection = config.attributes["connection"]
context.configure(connection=connection, target_metadata=config.attributes["target_metadata"],
                  render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
                  compare_type=True, transaction_per_migration=False)
with context.begin_transaction():
    context.run_migrations()
