"""Organizations, projects and API keys: the repository the CLI and the authenticator use.

Plain synchronous SQLAlchemy over a sessionmaker; async callers run these in a thread.
Everything hangs off one organization, "default": a self-hosted install is one tenant,
and projects give the per-application isolation (keys, limits) GroqCloud offers.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from tiergate.clock import Clock, SystemClock
from tiergate.ids import api_key_secret, short_id
from tiergate.store.db import write_session
from tiergate.store.errors import InvalidName, KeyNotFound, ProjectAlreadyExists, ProjectNotFound
from tiergate.store.models import ApiKey, Organization, Project

DEFAULT_ORG_NAME = "default"
DEFAULT_PROJECT_NAME = "default"
MAX_NAME_LENGTH = 100
_SYSTEM_CLOCK = SystemClock()


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One API key as a listing shows it (never the secret)."""

    id: str
    project_id: str
    project_name: str
    name: str | None
    prefix: str
    created_at: float
    revoked_at: float | None


@dataclass(frozen=True, slots=True)
class ActiveKey:
    """Who an unrevoked key belongs to: what the authenticator turns into a Principal."""

    key_id: str
    project_id: str
    project_name: str
    performance: bool
    org_id: str
    org_name: str


def hash_key(secret: str) -> str:
    """SHA-256 hex of an API key secret.

    A fast unsalted hash is enough here: secrets are 36 random bytes, so there is nothing
    to brute-force, and the request path hashes on every call.
    """
    return hashlib.sha256(secret.encode()).hexdigest()


def display_prefix(secret: str) -> str:
    """The part of a key a listing may show: first 6 and last 4 characters, e.g. "gsk_ab…wxyz"."""
    return f"{secret[:6]}…{secret[-4:]}"


def _clean_name(name: str, what: str) -> str:
    cleaned = name.strip()
    if not cleaned:
        raise InvalidName(f"The {what} name must not be blank.", param="name")
    if len(cleaned) > MAX_NAME_LENGTH:
        raise InvalidName(f"The {what} name must be at most {MAX_NAME_LENGTH} characters.", param="name")
    return cleaned


def _org_by_name(session: Session, name: str) -> Organization | None:
    return session.scalars(select(Organization).where(Organization.name == name)).one_or_none()


def _project_by_name(session: Session, org_id: str, name: str) -> Project | None:
    query = select(Project).where(Project.org_id == org_id, Project.name == name)
    return session.scalars(query).one_or_none()


def ensure_default(sessions: sessionmaker[Session], *, clock: Clock = _SYSTEM_CLOCK) -> Project:
    """Create organization "default" and its project "default" unless they exist; return the project.

    Idempotent, and safe when two processes start together: names are unique, so the
    slower one hits the constraint, rolls back and finds the rows the other one made.
    """
    for _attempt in range(3):
        try:
            with write_session(sessions) as session:
                org = _org_by_name(session, DEFAULT_ORG_NAME)
                if org is None:
                    org = Organization(id=short_id("org"), name=DEFAULT_ORG_NAME, created_at=clock.now())
                    session.add(org)
                    session.flush()
                project = _project_by_name(session, org.id, DEFAULT_PROJECT_NAME)
                if project is None:
                    project = Project(
                        id=short_id("project"),
                        org_id=org.id,
                        name=DEFAULT_PROJECT_NAME,
                        created_at=clock.now(),
                    )
                    session.add(project)
                return project
        except IntegrityError:
            continue
    raise RuntimeError("could not create the default organization and project")


def default_org(sessions: sessionmaker[Session]) -> Organization:
    """The "default" organization, created on first use."""
    for _attempt in range(2):
        with sessions() as session:
            org = _org_by_name(session, DEFAULT_ORG_NAME)
        if org is not None:
            return org
        ensure_default(sessions)
    raise RuntimeError("the default organization vanished while being created")


def create_project(
    sessions: sessionmaker[Session], name: str, performance: bool = False, *, clock: Clock = _SYSTEM_CLOCK
) -> Project:
    """Create a project in the default organization; its name must be new there."""
    name = _clean_name(name, "project")
    org = default_org(sessions)
    try:
        with write_session(sessions) as session:
            if _project_by_name(session, org.id, name) is not None:
                raise ProjectAlreadyExists(name)
            project = Project(
                id=short_id("project"),
                org_id=org.id,
                name=name,
                performance=performance,
                created_at=clock.now(),
            )
            session.add(project)
            return project
    except IntegrityError:
        # Another process created it between our check and our insert.
        raise ProjectAlreadyExists(name) from None


def update_project(sessions: sessionmaker[Session], name: str, *, performance: bool) -> Project:
    """Grant or withdraw a project's performance-tier entitlement."""
    org = default_org(sessions)
    with write_session(sessions) as session:
        project = _project_by_name(session, org.id, name)
        if project is None:
            raise ProjectNotFound(name)
        project.performance = performance
        return project


def list_projects(sessions: sessionmaker[Session]) -> list[Project]:
    """Projects of the default organization, oldest first."""
    org = default_org(sessions)
    with sessions() as session:
        query = select(Project).where(Project.org_id == org.id).order_by(Project.created_at, Project.id)
        return list(session.scalars(query))


def get_project_by_name(sessions: sessionmaker[Session], name: str) -> Project:
    """The default organization's project called `name`; raises ProjectNotFound."""
    org = default_org(sessions)
    with sessions() as session:
        project = _project_by_name(session, org.id, name)
        if project is None:
            raise ProjectNotFound(name)
        return project


def create_key(
    sessions: sessionmaker[Session],
    project_name: str = DEFAULT_PROJECT_NAME,
    name: str | None = None,
    *,
    clock: Clock = _SYSTEM_CLOCK,
) -> tuple[ApiKey, str]:
    """Create an API key in a project; return the row and the secret (the only time it exists)."""
    if name is not None:
        name = _clean_name(name, "key")
    project = get_project_by_name(sessions, project_name)
    secret = api_key_secret()
    with write_session(sessions) as session:
        key = ApiKey(
            id=short_id("key"),
            project_id=project.id,
            name=name,
            prefix=display_prefix(secret),
            key_hash=hash_key(secret),
            created_at=clock.now(),
        )
        session.add(key)
    return key, secret


def list_keys(sessions: sessionmaker[Session], project: str | None = None) -> list[KeyRecord]:
    """All keys (revoked ones too, marked), oldest first; only one project's when `project` is given."""
    query = (
        select(ApiKey, Project.name)
        .join(Project, ApiKey.project_id == Project.id)
        .order_by(ApiKey.created_at, ApiKey.id)
    )
    if project is not None:
        query = query.where(Project.id == get_project_by_name(sessions, project).id)
    with sessions() as session:
        return [
            KeyRecord(
                id=key.id,
                project_id=key.project_id,
                project_name=project_name,
                name=key.name,
                prefix=key.prefix,
                created_at=key.created_at,
                revoked_at=key.revoked_at,
            )
            for key, project_name in session.execute(query)
        ]


def revoke_key(sessions: sessionmaker[Session], key_id: str, *, clock: Clock = _SYSTEM_CLOCK) -> ApiKey:
    """Revoke a key; revoking it again keeps the first revocation time. Raises KeyNotFound."""
    with write_session(sessions) as session:
        key = session.get(ApiKey, key_id)
        if key is None:
            raise KeyNotFound(key_id)
        if key.revoked_at is None:
            key.revoked_at = clock.now()
        return key


def find_active_key_by_hash(sessions: sessionmaker[Session], key_hash: str) -> ActiveKey | None:
    """Owner of the unrevoked key with this hash, in one query; None for unknown or revoked keys."""
    query = (
        select(ApiKey.id, Project.id, Project.name, Project.performance, Organization.id, Organization.name)
        .join(Project, ApiKey.project_id == Project.id)
        .join(Organization, Project.org_id == Organization.id)
        .where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None))
    )
    with sessions() as session:
        row = session.execute(query).one_or_none()
    if row is None:
        return None
    key_id, project_id, project_name, performance, org_id, org_name = row
    return ActiveKey(key_id, project_id, project_name, bool(performance), org_id, org_name)


def count_keys(sessions: sessionmaker[Session], *, include_revoked: bool = True) -> int:
    """How many keys exist; `serve` makes a first key when this is 0."""
    query = select(func.count()).select_from(ApiKey)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    with sessions() as session:
        return session.scalar(query) or 0
