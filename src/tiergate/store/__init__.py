"""The durable store: SQLAlchemy models, repositories and Alembic migrations.

Typical start-up (what `create_app` and the CLI do):

    store = open_store(settings.resolved_database_url)   # migrate + default org/project
    ...store.sessions...                                 # sessionmaker for repositories
    store.close()
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from tiergate.store.db import make_engine, make_session_factory, migrate, write_session
from tiergate.store.tenancy import ensure_default

__all__ = ["Store", "make_engine", "make_session_factory", "migrate", "open_store", "write_session"]


@dataclass(frozen=True, slots=True)
class Store:
    """An engine and its session factory, opened together and closed together."""

    engine: Engine
    sessions: sessionmaker[Session]

    def close(self) -> None:
        self.engine.dispose()


def open_store(url: str) -> Store:
    """Connect to `url`, migrate it to the newest schema and make sure org/project "default" exist."""
    engine = make_engine(url)
    try:
        migrate(engine)
        sessions = make_session_factory(engine)
        ensure_default(sessions)
    except BaseException:
        engine.dispose()
        raise
    return Store(engine, sessions)
