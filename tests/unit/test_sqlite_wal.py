"""The SQLite engine's switch to WAL when several processes open a new database at the same moment."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from tiergate.store.db import _enter_wal, make_engine


class _RefusesFirst:
    """A cursor whose first `refusals` journal_mode switches fail the way SQLite's busy refusal does."""

    def __init__(self, refusals: int, message: str = "database is locked") -> None:
        self.refusals, self.message, self.calls = refusals, message, 0

    def execute(self, sql: str) -> None:
        self.calls += 1
        if self.calls <= self.refusals:
            raise sqlite3.OperationalError(self.message)


def test_a_busy_refusal_of_the_switch_is_tried_again() -> None:
    cursor = _RefusesFirst(3)
    _enter_wal(cursor)
    assert cursor.calls == 4


def test_any_other_error_of_the_switch_is_raised_at_once() -> None:
    cursor = _RefusesFirst(1, "disk I/O error")
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        _enter_wal(cursor)
    assert cursor.calls == 1


def test_a_connection_waits_for_a_writer_holding_the_new_database_then_is_in_wal(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    holder = sqlite3.connect(path, isolation_level=None, timeout=0, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")  # a process mid-migration, before the file was ever WAL
    threading.Timer(0.3, lambda: holder.execute("COMMIT")).start()
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    finally:
        engine.dispose()
        holder.close()
