"""Batch lines in the SQL store: claim with a lease, store a result once, give back, renew.

A line is claimed with a conditional UPDATE per row (state pending, or running with an expired
lease), so on SQLite (BEGIN IMMEDIATE) and PostgreSQL (row re-check under READ COMMITTED) alike
two processes never both win it. Its result is stored only while the claimer still holds the lease,
in the same transaction as the batch counter and the usage row: each line ends exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from tiergate.accounting.ledger import UsageEntry, add_usage
from tiergate.store.db import write_session
from tiergate.store.models import BatchJob, BatchLine


@dataclass(frozen=True, slots=True)
class LineTask:
    """A claimed line and who it runs as (the batch's creator)."""

    batch_id: str
    line: int
    custom_id: str
    request: str
    org_id: str
    org_name: str
    project_id: str
    project_name: str
    key_id: str
    # The batch's endpoint: which request road the line takes (chat, or audio by `url`).
    endpoint: str = "/v1/chat/completions"

    @property
    def key(self) -> tuple[str, int]:
        return (self.batch_id, self.line)


def claim_lines(
    sessions: sessionmaker[Session], owner: str, now: float, lease: float, limit: int
) -> list[LineTask]:
    """Lease up to `limit` runnable lines of in-progress batches, oldest batch first."""
    if limit <= 0:
        return []
    runnable = or_(
        BatchLine.state == "pending", and_(BatchLine.state == "running", BatchLine.lease_expires_at < now)
    )
    claimed: list[LineTask] = []
    with write_session(sessions) as session:
        candidates = session.execute(
            select(BatchLine, BatchJob)
            .join(BatchJob, BatchJob.id == BatchLine.batch_id)
            .where(BatchJob.status == "in_progress", runnable)
            .order_by(BatchJob.created_at, BatchLine.batch_id, BatchLine.line)
            .limit(limit)
        ).all()
        for line, batch in candidates:
            # Re-checked per row: on PostgreSQL a concurrent claimer makes this match nothing.
            won = session.execute(
                update(BatchLine)
                .where(BatchLine.batch_id == line.batch_id, BatchLine.line == line.line, runnable)
                .values(
                    state="running",
                    lease_owner=owner,
                    lease_expires_at=now + lease,
                    attempts=BatchLine.attempts + 1,
                )
            ).rowcount
            if won == 1:
                claimed.append(
                    LineTask(
                        line.batch_id,
                        line.line,
                        line.custom_id,
                        line.request or "{}",
                        batch.org_id,
                        batch.org_name,
                        batch.project_id,
                        batch.project_name,
                        batch.key_id,
                        batch.endpoint,
                    )
                )
    return claimed


def record_line(
    sessions: sessionmaker[Session],
    owner: str,
    task: LineTask,
    *,
    ok: bool,
    result: str,
    usage: UsageEntry | None,
    now: float,
) -> bool:
    """Store a line's result, its counter and its usage together, only if we still hold its lease."""
    with write_session(sessions) as session:
        won = session.execute(
            update(BatchLine)
            .where(
                BatchLine.batch_id == task.batch_id,
                BatchLine.line == task.line,
                BatchLine.state == "running",
                BatchLine.lease_owner == owner,
            )
            .values(
                state="done" if ok else "failed",
                result=result,
                finished_at=now,
                lease_owner=None,
                lease_expires_at=None,
            )
        ).rowcount
        if won != 1:
            return False
        counter = BatchJob.completed if ok else BatchJob.failed
        session.execute(update(BatchJob).where(BatchJob.id == task.batch_id).values({counter: counter + 1}))
        if usage is not None:
            add_usage(session, usage, now)
        return True


def release_lines(sessions: sessionmaker[Session], owner: str, keys: Sequence[tuple[str, int]]) -> None:
    """Give unfinished lines back (shutdown): another process, or our next start, runs them at once."""
    if not keys:
        return
    with write_session(sessions) as session:
        for batch_id, line in keys:
            session.execute(
                update(BatchLine)
                .where(
                    BatchLine.batch_id == batch_id,
                    BatchLine.line == line,
                    BatchLine.state == "running",
                    BatchLine.lease_owner == owner,
                )
                .values(state="pending", lease_owner=None, lease_expires_at=None)
            )


def renew_leases(sessions: sessionmaker[Session], owner: str, now: float, lease: float) -> None:
    with write_session(sessions) as session:
        session.execute(
            update(BatchLine)
            .where(BatchLine.lease_owner == owner, BatchLine.state == "running")
            .values(lease_expires_at=now + lease)
        )
        session.execute(
            update(BatchJob).where(BatchJob.lease_owner == owner).values(lease_expires_at=now + lease)
        )
