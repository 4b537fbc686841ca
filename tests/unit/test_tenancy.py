"""Tenancy repository (orgs, projects, keys), run on SQLite and PostgreSQL alike."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, inspect, select

from tests.unit.store_backends import BACKENDS, database_url, fresh_store
from tiergate.clock import FakeClock
from tiergate.store import Store, make_engine, make_session_factory, migrate, tenancy
from tiergate.store.errors import InvalidName, KeyNotFound, ProjectAlreadyExists, ProjectNotFound
from tiergate.store.models import ApiKey, Base, Organization, Project


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def store(backend: str, tmp_path: Path) -> Iterator[Store]:
    with fresh_store(backend, tmp_path) as opened:
        yield opened


def test_migration_creates_exactly_the_tables_the_models_describe(backend: str, tmp_path: Path) -> None:
    with database_url(backend, tmp_path) as url:
        engine = make_engine(url)
        try:
            migrate(engine)
            with engine.connect() as connection:
                differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
                tables = set(inspect(connection).get_table_names())
        finally:
            engine.dispose()
    assert differences == []
    assert {"organizations", "projects", "api_keys", "rate_limit_overrides", "alembic_version"} <= tables


def test_migrating_twice_is_a_no_op(store: Store) -> None:
    migrate(store.engine)
    tenancy.ensure_default(store.sessions)
    assert [p.name for p in tenancy.list_projects(store.sessions)] == ["default"]


def test_ensure_default_is_idempotent(store: Store) -> None:
    first = tenancy.ensure_default(store.sessions)
    second = tenancy.ensure_default(store.sessions)
    assert first.id == second.id
    with store.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Organization)) == 1
        assert session.scalar(select(func.count()).select_from(Project)) == 1
    assert first.id.startswith("project_") and len(first.id) == len("project_") + 26
    assert tenancy.default_org(store.sessions).id.startswith("org_")


def _open_store_in_process(url: str) -> str:
    from tiergate.store import open_store

    opened = open_store(url)
    try:
        return tenancy.get_project_by_name(opened.sessions, "default").id
    finally:
        opened.close()


def test_processes_starting_together_create_one_default_org_and_project(backend: str, tmp_path: Path) -> None:
    with database_url(backend, tmp_path) as url:
        with multiprocessing.get_context("spawn").Pool(4) as pool:
            project_ids = pool.map(_open_store_in_process, [url] * 4)
        assert len(set(project_ids)) == 1
        engine = make_engine(url)
        try:
            with make_session_factory(engine)() as session:
                assert session.scalar(select(func.count()).select_from(Organization)) == 1
                assert session.scalar(select(func.count()).select_from(Project)) == 1
        finally:
            engine.dispose()


def test_create_project_then_find_it_by_name(store: Store) -> None:
    clock = FakeClock(start=4_000_000_000.0)  # after the default project, which used the real clock
    created = tenancy.create_project(store.sessions, "myapp-prod", performance=True, clock=clock)
    found = tenancy.get_project_by_name(store.sessions, "myapp-prod")
    assert (found.id, found.name, found.performance, found.created_at) == (
        created.id,
        "myapp-prod",
        True,
        4_000_000_000.0,
    )
    assert [p.name for p in tenancy.list_projects(store.sessions)] == ["default", "myapp-prod"]


def test_project_names_are_unique_in_the_org(store: Store) -> None:
    tenancy.create_project(store.sessions, "staging")
    with pytest.raises(ProjectAlreadyExists, match="staging"):
        tenancy.create_project(store.sessions, "staging")
    with pytest.raises(ProjectAlreadyExists):
        tenancy.create_project(store.sessions, "default")


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
def test_blank_or_overlong_project_names_are_refused(store: Store, name: str) -> None:
    with pytest.raises(InvalidName):
        tenancy.create_project(store.sessions, name)


def test_update_project_toggles_the_performance_entitlement(store: Store) -> None:
    tenancy.create_project(store.sessions, "fast")
    assert tenancy.update_project(store.sessions, "fast", performance=True).performance is True
    assert tenancy.get_project_by_name(store.sessions, "fast").performance is True
    tenancy.update_project(store.sessions, "fast", performance=False)
    assert tenancy.get_project_by_name(store.sessions, "fast").performance is False


def test_unknown_project_raises_project_not_found(store: Store) -> None:
    with pytest.raises(ProjectNotFound, match="nope"):
        tenancy.get_project_by_name(store.sessions, "nope")
    with pytest.raises(ProjectNotFound):
        tenancy.update_project(store.sessions, "nope", performance=True)
    with pytest.raises(ProjectNotFound):
        tenancy.create_key(store.sessions, "nope")
    with pytest.raises(ProjectNotFound):
        tenancy.list_keys(store.sessions, "nope")


def test_created_key_stores_only_the_hash_and_a_display_prefix(store: Store) -> None:
    key, secret = tenancy.create_key(store.sessions, "default", name="ci")
    assert secret.startswith("gsk_") and len(secret) > 40
    assert key.id.startswith("key_")
    assert key.key_hash == tenancy.hash_key(secret) and len(key.key_hash) == 64
    assert key.prefix == f"{secret[:6]}…{secret[-4:]}"
    with store.sessions() as session:
        stored = session.get(ApiKey, key.id)
        assert stored is not None
        row_values = [str(getattr(stored, column.key)) for column in ApiKey.__table__.columns]
    assert secret not in row_values
    assert all(secret[6:-4] not in value for value in row_values)


def test_find_active_key_by_hash_returns_project_and_org(store: Store) -> None:
    project = tenancy.create_project(store.sessions, "perf", performance=True)
    key, secret = tenancy.create_key(store.sessions, "perf")
    active = tenancy.find_active_key_by_hash(store.sessions, tenancy.hash_key(secret))
    assert active == tenancy.ActiveKey(
        key_id=key.id,
        project_id=project.id,
        project_name="perf",
        performance=True,
        org_id=project.org_id,
        org_name="default",
    )
    assert tenancy.find_active_key_by_hash(store.sessions, tenancy.hash_key(secret + "x")) is None


def test_revoked_key_is_no_longer_active_and_revoking_again_keeps_the_first_time(store: Store) -> None:
    clock = FakeClock(start=1_000.0)
    key, secret = tenancy.create_key(store.sessions)
    assert tenancy.revoke_key(store.sessions, key.id, clock=clock).revoked_at == 1_000.0
    clock.advance(60)
    assert tenancy.revoke_key(store.sessions, key.id, clock=clock).revoked_at == 1_000.0
    assert tenancy.find_active_key_by_hash(store.sessions, tenancy.hash_key(secret)) is None


def test_revoking_an_unknown_key_raises_key_not_found(store: Store) -> None:
    with pytest.raises(KeyNotFound, match="key_missing"):
        tenancy.revoke_key(store.sessions, "key_missing")


def test_list_keys_shows_all_keys_or_one_projects_keys(store: Store) -> None:
    tenancy.create_project(store.sessions, "other")
    first, _ = tenancy.create_key(store.sessions, "default", name="a")
    second, _ = tenancy.create_key(store.sessions, "other", name="b")
    tenancy.revoke_key(store.sessions, first.id)
    listed = tenancy.list_keys(store.sessions)
    assert {(k.id, k.project_name, k.name) for k in listed} == {
        (first.id, "default", "a"),
        (second.id, "other", "b"),
    }
    assert next(k for k in listed if k.id == first.id).revoked_at is not None
    assert [k.id for k in tenancy.list_keys(store.sessions, "other")] == [second.id]


def test_count_keys_counts_revoked_keys_unless_asked_not_to(store: Store) -> None:
    assert tenancy.count_keys(store.sessions) == 0
    key, _ = tenancy.create_key(store.sessions)
    tenancy.create_key(store.sessions)
    tenancy.revoke_key(store.sessions, key.id)
    assert tenancy.count_keys(store.sessions) == 2
    assert tenancy.count_keys(store.sessions, include_revoked=False) == 1


def test_sqlite_store_uses_wal_and_enforces_foreign_keys(tmp_path: Path) -> None:
    with fresh_store("sqlite", tmp_path) as store, store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000
