"""Engine, sessions and migrations for the store: SQLite in the data dir by default, PostgreSQL by URL.

The same SQLAlchemy code runs on both; only connection setup differs. SQLite is tuned for a
server process that shares the file with short-lived CLI processes: WAL (readers never block
the writer), a busy timeout (a writer waits instead of failing), foreign keys on, and write
transactions that take the write lock up front (see `write_session`).
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 10_000
_MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Any constant works; it only has to be the same in every tiergate process.
_MIGRATION_LOCK_KEY = 0x7469657267617465  # "tiergate"
# Execution option asking the SQLite "begin" hook for BEGIN IMMEDIATE.
_WRITE_OPTION = "tiergate_write"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Build an engine for `url`; on SQLite also create the file's folder and apply the pragmas."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, **kwargs)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, **kwargs)
    _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy's "begin" event below; pysqlite's own
        # implicit BEGIN cannot be told to take the write lock early.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        _enter_wal(cursor)
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # A deferred transaction that reads and then writes fails at once with SQLITE_BUSY
        # (busy_timeout does not help) when another process wrote in between; taking the
        # write lock at BEGIN makes such writers queue on busy_timeout instead.
        immediate = connection.get_execution_options().get(_WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _enter_wal(cursor: Any) -> None:
    """Switch the file to WAL (it stays so). Processes opening a new database together can find the
    switch refused with SQLITE_BUSY at once, busy_timeout or not: SQLite returns it rather than wait
    when two connections holding read locks both want the exclusive one. So try again a while."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.01, 0.05))


def make_session_factory(target: str | Engine) -> sessionmaker[Session]:
    """Sessions on `target` (a URL or an engine) whose rows stay readable after commit.

    Repositories return rows after their session closed, hence expire_on_commit=False.
    Given a URL it builds the engine; `sessions.kw["bind"]` is that engine (to dispose of it).
    """
    engine = make_engine(target) if isinstance(target, str) else target
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def write_session(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A session in one transaction that will write: committed on success, rolled back on error.

    On SQLite the transaction starts with BEGIN IMMEDIATE; on PostgreSQL it is a plain BEGIN.
    """
    with sessions.begin() as session:
        session.connection(execution_options={_WRITE_OPTION: True})
        yield session


def alembic_config() -> Config:
    """Alembic configuration pointing at the packaged migrations; no alembic.ini needed."""
    config = Config()
    # ConfigParser interpolates "%", so escape it in the path.
    config.set_main_option("script_location", str(_MIGRATIONS_DIR).replace("%", "%%"))
    return config


def migrate(target: str | Engine) -> None:
    """Bring the database at `target` (a URL or an engine) to the newest schema.

    Safe when several processes start together: they take turns (an advisory lock on
    PostgreSQL, the SQLite write lock), and the later ones find nothing left to do.
    """
    engine = make_engine(target) if isinstance(target, str) else target
    try:
        with (
            engine.connect().execution_options(**{_WRITE_OPTION: True}) as connection,
            connection.begin(),
        ):
            if engine.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        if isinstance(target, str):
            engine.dispose()
