"""Store backends for contract tests: every store test runs on SQLite and on PostgreSQL.

PostgreSQL tests get a fresh schema each (dropped afterwards), so runs are repeatable and
may run side by side. They skip only when no server answers at TIERGATE_TEST_POSTGRES_URL.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from tiergate.store import Store, open_store

POSTGRES_URL = os.environ.get(
    "TIERGATE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BACKENDS = [pytest.param("sqlite"), pytest.param("postgresql", marks=pytest.mark.postgres)]


def _libpq_url() -> str:
    return POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://", 1)


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A SQLAlchemy URL whose connections live in a new, empty schema; the schema is dropped after."""
    try:
        admin = psycopg.connect(_libpq_url(), autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL unreachable at {POSTGRES_URL}: {exc}")
    schema = f"tg_test_{secrets.token_hex(6)}"
    with admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            separator = "&" if "?" in POSTGRES_URL else "?"
            yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
        finally:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


@contextmanager
def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A URL to an empty database of the given backend ("sqlite" or "postgresql")."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'store' / 'tiergate.db'}"
    else:
        with postgres_schema() as url:
            yield url


@contextmanager
def fresh_store(backend: str, tmp_path: Path) -> Iterator[Store]:
    """A migrated store with the default org and project, on an empty database."""
    with database_url(backend, tmp_path) as url:
        store = open_store(url)
        try:
            yield store
        finally:
            store.close()
