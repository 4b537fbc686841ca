"""Alembic environment: runs on the connection `tiergate.store.db.migrate` hands over.

Run from the alembic command line (developers writing a revision), it connects to
TIERGATE_DATABASE_URL or the ini file's sqlalchemy.url instead.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection

from tiergate.store.db import make_engine
from tiergate.store.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    # Batch mode lets later revisions alter columns on SQLite (which lacks most ALTER TABLE).
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = os.environ.get("TIERGATE_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set TIERGATE_DATABASE_URL (or sqlalchemy.url) to run alembic by hand")
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("tiergate migrations run online only (tiergate.store.db.migrate)")
run_migrations_online()
