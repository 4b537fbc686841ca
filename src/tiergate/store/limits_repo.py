"""Rate-limit overrides per model and tier, for the organization or for one project.

GroqCloud's rule (Projects docs): "Custom project rate limits can only be set to values equal
to or lower than your organization's limits." The store keeps that invariant both ways: a
project limit above the org's override is refused, and so is an org limit below an existing
project's. Units not overridden anywhere fall back to the model's defaults, which live with
the model registry, not here.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from tiergate.clock import Clock, SystemClock
from tiergate.ids import short_id
from tiergate.store.db import write_session
from tiergate.store.errors import InvalidLimit, LimitAboveOrgLimit
from tiergate.store.models import LIMIT_UNITS, TIERS, Project, RateLimitOverride
from tiergate.store.tenancy import default_org, get_project_by_name

_SYSTEM_CLOCK = SystemClock()


@dataclass(frozen=True, slots=True)
class LimitRecord:
    """One override row as `limits show` lists it; project_name None means org level."""

    org_id: str
    project_id: str | None
    project_name: str | None
    model: str
    tier: str
    rpm: int | None
    rpd: int | None
    tpm: int | None
    tpd: int | None
    ash: int | None
    asd: int | None
    updated_at: float


def _check_request(model: str, tier: str, units: dict[str, int]) -> None:
    if not model.strip():
        raise InvalidLimit("A model is required.", param="model")
    if tier not in TIERS:
        raise InvalidLimit(f"Unknown tier `{tier}`; use one of: {', '.join(TIERS)}.", param="tier")
    if not units:
        raise InvalidLimit(f"Give at least one limit to set: {', '.join(LIMIT_UNITS)}.")
    for unit, value in units.items():
        if value < 0:
            raise InvalidLimit(f"The {unit} limit must not be negative.", param=unit)


def _row(
    session: Session, org_id: str, project_id: str | None, model: str, tier: str
) -> RateLimitOverride | None:
    project_match = (
        RateLimitOverride.project_id.is_(None)
        if project_id is None
        else RateLimitOverride.project_id == project_id
    )
    query = select(RateLimitOverride).where(
        RateLimitOverride.org_id == org_id,
        project_match,
        RateLimitOverride.model == model,
        RateLimitOverride.tier == tier,
    )
    return session.scalars(query).one_or_none()


def _check_against_org(
    org_row: RateLimitOverride | None, project_units: dict[str, int | None], project: str
) -> None:
    if org_row is None:
        return
    for unit, value in project_units.items():
        ceiling = getattr(org_row, unit)
        if value is not None and ceiling is not None and value > ceiling:
            raise LimitAboveOrgLimit(
                f"Project `{project}` {unit} limit {value} is above the organization's {unit} limit "
                f"{ceiling} for {org_row.model} ({org_row.tier}); project limits can only be "
                "equal to or lower than the organization's.",
                param=unit,
            )


def _check_projects_below(session: Session, org_row: RateLimitOverride) -> None:
    query = (
        select(RateLimitOverride, Project.name)
        .join(Project, RateLimitOverride.project_id == Project.id)
        .where(
            RateLimitOverride.org_id == org_row.org_id,
            RateLimitOverride.model == org_row.model,
            RateLimitOverride.tier == org_row.tier,
        )
    )
    for project_row, project_name in session.execute(query):
        _check_against_org(org_row, project_row.units(), project_name)


def set_limit(
    sessions: sessionmaker[Session],
    model: str,
    *,
    project: str | None = None,
    tier: str = "on_demand",
    rpm: int | None = None,
    rpd: int | None = None,
    tpm: int | None = None,
    tpd: int | None = None,
    ash: int | None = None,
    asd: int | None = None,
    clock: Clock = _SYSTEM_CLOCK,
) -> RateLimitOverride:
    """Set limits for `model` and `tier`, org-wide (project None) or for one project.

    Only the units given change; the others keep their stored value. Raises
    LimitAboveOrgLimit when the result would put a project above the organization.
    """
    given = {
        unit: value
        for unit, value in dict(rpm=rpm, rpd=rpd, tpm=tpm, tpd=tpd, ash=ash, asd=asd).items()
        if value is not None
    }
    _check_request(model, tier, given)
    org = default_org(sessions)
    project_id = None if project is None else get_project_by_name(sessions, project).id
    for _attempt in range(3):
        try:
            return _write_limit(sessions, org.id, project, project_id, model, tier, given, clock.now())
        except IntegrityError:
            continue  # another process inserted the same row first; now it exists, update it
    raise RuntimeError("could not store the rate limit")


def _write_limit(
    sessions: sessionmaker[Session],
    org_id: str,
    project: str | None,
    project_id: str | None,
    model: str,
    tier: str,
    given: dict[str, int],
    now: float,
) -> RateLimitOverride:
    with write_session(sessions) as session:
        row = _row(session, org_id, project_id, model, tier)
        if row is None:
            row = RateLimitOverride(
                id=short_id("limit"), org_id=org_id, project_id=project_id, model=model, tier=tier
            )
            session.add(row)
        for unit, value in given.items():
            setattr(row, unit, value)
        row.updated_at = now
        if project is None:
            _check_projects_below(session, row)
        else:
            _check_against_org(_row(session, org_id, None, model, tier), row.units(), project)
        return row


def _record(row: RateLimitOverride, project_name: str | None) -> LimitRecord:
    return LimitRecord(
        org_id=row.org_id,
        project_id=row.project_id,
        project_name=project_name,
        model=row.model,
        tier=row.tier,
        **row.units(),
        updated_at=row.updated_at,
    )


def list_limits(sessions: sessionmaker[Session]) -> list[LimitRecord]:
    """Every override: org-level rows first, then projects by name; by model and tier within."""
    query = (
        select(RateLimitOverride, Project.name)
        .outerjoin(Project, RateLimitOverride.project_id == Project.id)
        .order_by(
            RateLimitOverride.project_id.is_not(None),
            Project.name,
            RateLimitOverride.model,
            RateLimitOverride.tier,
        )
    )
    with sessions() as session:
        return [_record(row, name) for row, name in session.execute(query)]


def limits_for(sessions: sessionmaker[Session], org_id: str, project_id: str) -> list[RateLimitOverride]:
    """The overrides that bind a request from this project: its org's rows and its own."""
    query = select(RateLimitOverride).where(
        RateLimitOverride.org_id == org_id,
        or_(RateLimitOverride.project_id.is_(None), RateLimitOverride.project_id == project_id),
    )
    with sessions() as session:
        return list(session.scalars(query))
