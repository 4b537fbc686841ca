"""Rate-limit overrides: partial updates, tiers, and the project <= org ceiling, on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.store_backends import BACKENDS, fresh_store
from tiergate.clock import FakeClock
from tiergate.store import Store, limits_repo, tenancy
from tiergate.store.errors import InvalidLimit, LimitAboveOrgLimit, ProjectNotFound

MODEL = "llama-3.1-8b-instant"


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with fresh_store(request.param, tmp_path) as opened:
        tenancy.create_project(opened.sessions, "myapp-prod")
        tenancy.create_project(opened.sessions, "myapp-dev")
        yield opened


def test_only_the_given_units_change(store: Store) -> None:
    clock = FakeClock(start=100.0)
    limits_repo.set_limit(store.sessions, MODEL, rpm=30, tpm=6000, clock=clock)
    clock.advance(5)
    row = limits_repo.set_limit(store.sessions, MODEL, rpd=1000, clock=clock)
    assert row.units() == {"rpm": 30, "rpd": 1000, "tpm": 6000, "tpd": None, "ash": None, "asd": None}
    assert row.updated_at == 105.0
    assert len(limits_repo.list_limits(store.sessions)) == 1


def test_each_tier_and_scope_is_its_own_row(store: Store) -> None:
    limits_repo.set_limit(store.sessions, MODEL, rpm=30)
    limits_repo.set_limit(store.sessions, MODEL, tier="flex", rpm=300)
    limits_repo.set_limit(store.sessions, MODEL, project="myapp-prod", rpm=20)
    records = limits_repo.list_limits(store.sessions)
    assert [(r.project_name, r.tier, r.rpm) for r in records] == [
        (None, "flex", 300),
        (None, "on_demand", 30),
        ("myapp-prod", "on_demand", 20),
    ]


def test_project_limit_may_equal_but_not_exceed_the_org_limit(store: Store) -> None:
    limits_repo.set_limit(store.sessions, MODEL, rpm=100)
    assert limits_repo.set_limit(store.sessions, MODEL, project="myapp-prod", rpm=100).rpm == 100
    with pytest.raises(LimitAboveOrgLimit, match=r"rpm limit 101 is above the organization's rpm limit 100"):
        limits_repo.set_limit(store.sessions, MODEL, project="myapp-prod", rpm=101)
    # The refused change left the stored limit alone.
    prod = [r for r in limits_repo.list_limits(store.sessions) if r.project_name == "myapp-prod"]
    assert [r.rpm for r in prod] == [100]


def test_project_limit_is_free_where_the_org_sets_no_limit_for_that_unit_or_tier(store: Store) -> None:
    limits_repo.set_limit(store.sessions, MODEL, rpm=100)
    assert limits_repo.set_limit(store.sessions, MODEL, project="myapp-prod", tpm=10**9).tpm == 10**9
    assert limits_repo.set_limit(store.sessions, MODEL, project="myapp-prod", tier="flex", rpm=500).rpm == 500
    assert limits_repo.set_limit(store.sessions, "other-model", project="myapp-prod", rpm=500).rpm == 500


def test_org_limit_below_an_existing_project_limit_is_refused(store: Store) -> None:
    limits_repo.set_limit(store.sessions, MODEL, project="myapp-prod", rpm=80)
    with pytest.raises(LimitAboveOrgLimit, match="myapp-prod"):
        limits_repo.set_limit(store.sessions, MODEL, rpm=50)
    assert limits_repo.set_limit(store.sessions, MODEL, rpm=80).rpm == 80


def test_limits_for_returns_the_org_rows_and_only_that_projects_rows(store: Store) -> None:
    prod = tenancy.get_project_by_name(store.sessions, "myapp-prod")
    limits_repo.set_limit(store.sessions, MODEL, rpm=100)
    limits_repo.set_limit(store.sessions, MODEL, project="myapp-prod", rpm=80)
    limits_repo.set_limit(store.sessions, MODEL, project="myapp-dev", rpm=30)
    rows = limits_repo.limits_for(store.sessions, prod.org_id, prod.id)
    assert {(row.project_id, row.rpm) for row in rows} == {(None, 100), (prod.id, 80)}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rpm": 1, "tier": "batch"}, "Unknown tier"),
        ({"rpm": -1}, "must not be negative"),
        ({}, "at least one limit"),
    ],
)
def test_bad_limit_requests_are_refused(store: Store, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidLimit, match=message):
        limits_repo.set_limit(store.sessions, MODEL, **kwargs)  # type: ignore[arg-type]


def test_limit_for_an_unknown_project_raises_project_not_found(store: Store) -> None:
    with pytest.raises(ProjectNotFound):
        limits_repo.set_limit(store.sessions, MODEL, project="ghost", rpm=1)
