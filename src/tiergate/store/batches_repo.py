"""Batches and batch lines in the SQL store: the durable state the runner works from.

Every state change is one short transaction guarded by a WHERE on the expected state (and, for
leased work, the lease owner), so two processes sharing a database never both win: the loser's
UPDATE matches no row. Lines: pending -> running (leased) -> done | failed, or expired / cancelled.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import orjson
from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from tiergate.store.db import write_session
from tiergate.store.files_repo import FileInfo, new_file_row
from tiergate.store.models import BatchJob, BatchLine

CANCELLABLE = ("validating", "in_progress")
UNFINISHED = ("pending", "running")
_FINAL_TIME = {"completed": "completed_at", "expired": "expired_at", "cancelled": "cancelled_at"}
_BATCH_FIELDS = [c.key for c in BatchJob.__table__.columns]


def detach(row: BatchJob) -> BatchJob:
    """A plain copy of a batch row, safe to read after its session closed."""
    return BatchJob(**{name: getattr(row, name) for name in _BATCH_FIELDS})


# -- API side -------------------------------------------------------------------------------------


def create_batch(sessions: sessionmaker[Session], batch: BatchJob) -> None:
    with write_session(sessions) as session:
        session.add(batch)


def get_batch(sessions: sessionmaker[Session], project_id: str, batch_id: str) -> BatchJob | None:
    with sessions() as session:
        return session.scalars(
            select(BatchJob).where(BatchJob.id == batch_id, BatchJob.project_id == project_id)
        ).one_or_none()


def list_batches(
    sessions: sessionmaker[Session], project_id: str, *, before_id: str | None, limit: int
) -> tuple[list[BatchJob], bool]:
    """Newest first (ids sort by creation time); the bool says whether more follow."""
    query = select(BatchJob).where(BatchJob.project_id == project_id)
    if before_id is not None:
        query = query.where(BatchJob.id < before_id)
    with sessions() as session:
        rows = list(session.scalars(query.order_by(BatchJob.id.desc()).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def get_batches(sessions: sessionmaker[Session], project_id: str, batch_ids: Sequence[str]) -> list[BatchJob]:
    with sessions() as session:
        rows = session.scalars(
            select(BatchJob).where(BatchJob.project_id == project_id, BatchJob.id.in_(list(batch_ids)))
        )
        by_id = {row.id: row for row in rows}
    return [by_id[i] for i in dict.fromkeys(batch_ids) if i in by_id]


def request_cancel(
    sessions: sessionmaker[Session], project_id: str, batch_id: str, now: float
) -> BatchJob | None:
    """Move a running batch to `cancelling` (the runner finishes the job within a poll or two)."""
    with write_session(sessions) as session:
        session.execute(
            update(BatchJob)
            .where(
                BatchJob.id == batch_id, BatchJob.project_id == project_id, BatchJob.status.in_(CANCELLABLE)
            )
            .values(status="cancelling", cancelling_at=now, final_status="cancelled")
        )
        row = session.scalars(
            select(BatchJob).where(BatchJob.id == batch_id, BatchJob.project_id == project_id)
        ).one_or_none()
        return detach(row) if row is not None else None


# -- runner side: batch-level work ----------------------------------------------------------------


def _lease_free(model: type[BatchJob] | type[BatchLine], now: float):
    return or_(model.lease_owner.is_(None), model.lease_expires_at < now)


def claim_batch(
    sessions: sessionmaker[Session], statuses: Sequence[str], owner: str, now: float, lease: float
) -> BatchJob | None:
    """Take the oldest batch in one of `statuses` whose lease is free (validation, finalization)."""
    condition = and_(BatchJob.status.in_(list(statuses)), _lease_free(BatchJob, now))
    if "validating" not in statuses:
        # Finalization waits until no line can still change (cancel and expiry stop them first).
        condition = and_(
            condition,
            BatchJob.final_status.is_not(None),
            ~exists().where(BatchLine.batch_id == BatchJob.id, BatchLine.state.in_(UNFINISHED)),
        )
    with write_session(sessions) as session:
        batch_id = session.scalar(select(BatchJob.id).where(condition).order_by(BatchJob.created_at).limit(1))
        if batch_id is None:
            return None
        claimed = session.execute(
            update(BatchJob)
            .where(BatchJob.id == batch_id, condition)
            .values(lease_owner=owner, lease_expires_at=now + lease)
        ).rowcount
        if claimed != 1:
            return None
        return detach(session.get_one(BatchJob, batch_id))


def store_validation(
    sessions: sessionmaker[Session],
    batch_id: str,
    owner: str,
    lines: Sequence[tuple[int, str, str | None, str | None]],
    errors: list[dict[str, object]],
    *,
    fatal: bool,
    now: float,
) -> bool:
    """Write every line row and move the batch on, in one transaction (a crash leaves nothing half)."""
    with write_session(sessions) as session:
        mine = and_(BatchJob.id == batch_id, BatchJob.status == "validating", BatchJob.lease_owner == owner)
        if session.scalar(select(BatchJob.id).where(mine)) is None:
            # Cancelled or expired while we validated: drop our lease at once, or finalization
            # would wait for it to lapse (batch_lease_seconds) before writing the cancelled batch.
            session.execute(
                update(BatchJob)
                .where(BatchJob.id == batch_id, BatchJob.lease_owner == owner)
                .values(lease_owner=None, lease_expires_at=None)
            )
            return False
        errors_json = orjson.dumps(errors).decode() if errors else None
        if fatal:
            session.execute(
                update(BatchJob)
                .where(mine)
                .values(status="failed", failed_at=now, errors_json=errors_json, lease_owner=None)
            )
            return True
        failed = 0
        for line, custom_id, request, failed_result in lines:
            failed += failed_result is not None
            session.add(
                BatchLine(
                    batch_id=batch_id,
                    line=line,
                    custom_id=custom_id,
                    state="failed" if failed_result is not None else "pending",
                    request=request,
                    attempts=0,
                    result=failed_result,
                    finished_at=now if failed_result is not None else None,
                )
            )
        session.flush()
        session.execute(
            update(BatchJob)
            .where(mine)
            .values(
                status="in_progress",
                in_progress_at=now,
                total=len(lines),
                failed=failed,
                errors_json=errors_json,
                lease_owner=None,
                lease_expires_at=None,
            )
        )
        return True


def fail_batch(
    sessions: sessionmaker[Session], batch_id: str, owner: str, errors: list[dict[str, object]], now: float
) -> None:
    with write_session(sessions) as session:
        session.execute(
            update(BatchJob)
            .where(BatchJob.id == batch_id, BatchJob.status == "validating", BatchJob.lease_owner == owner)
            .values(
                status="failed", failed_at=now, errors_json=orjson.dumps(errors).decode(), lease_owner=None
            )
        )


def release_batch(sessions: sessionmaker[Session], batch_id: str, owner: str) -> None:
    """Drop our lease on a batch so any process (this one included) can take the work up again."""
    with write_session(sessions) as session:
        session.execute(
            update(BatchJob)
            .where(BatchJob.id == batch_id, BatchJob.lease_owner == owner)
            .values(lease_owner=None, lease_expires_at=None)
        )


def expire_due(sessions: sessionmaker[Session], now: float) -> list[str]:
    """Batches past expires_at stop: unfinished lines become `expired` (error file, code batch_expired)."""
    with write_session(sessions) as session:
        due = list(
            session.scalars(
                select(BatchJob.id).where(BatchJob.status.in_(CANCELLABLE), BatchJob.expires_at <= now)
            )
        )
        for batch_id in due:
            stopped = _stop_lines(session, batch_id, "expired")
            session.execute(
                update(BatchJob)
                .where(BatchJob.id == batch_id, BatchJob.status.in_(CANCELLABLE))
                .values(
                    status="finalizing",
                    final_status="expired",
                    finalizing_at=now,
                    failed=BatchJob.failed + stopped,
                    lease_owner=None,
                    lease_expires_at=None,
                )
            )
        return due


def apply_cancels(sessions: sessionmaker[Session]) -> list[str]:
    """Cancelling batches stop their unfinished lines now; finalization then writes what was done."""
    with write_session(sessions) as session:
        batch_ids = list(
            session.scalars(
                select(BatchJob.id).where(
                    BatchJob.status == "cancelling",
                    exists().where(BatchLine.batch_id == BatchJob.id, BatchLine.state.in_(UNFINISHED)),
                )
            )
        )
        for batch_id in batch_ids:
            _stop_lines(session, batch_id, "cancelled")
        return batch_ids


def _stop_lines(session: Session, batch_id: str, state: str) -> int:
    # A process still running one of these lines loses its lease here: its result is discarded.
    return session.execute(
        update(BatchLine)
        .where(BatchLine.batch_id == batch_id, BatchLine.state.in_(UNFINISHED))
        .values(state=state, lease_owner=None, lease_expires_at=None)
    ).rowcount


def mark_finishable(sessions: sessionmaker[Session], now: float) -> int:
    """In-progress batches with no pending or running line move to finalizing."""
    with write_session(sessions) as session:
        return session.execute(
            update(BatchJob)
            .where(
                BatchJob.status == "in_progress",
                ~exists().where(BatchLine.batch_id == BatchJob.id, BatchLine.state.in_(UNFINISHED)),
            )
            .values(status="finalizing", final_status="completed", finalizing_at=now)
        ).rowcount


def iter_results(
    sessions: sessionmaker[Session], batch_id: str
) -> Iterator[tuple[int, str, str, str | None]]:
    """(line, custom_id, state, result) for every line, in input order, streamed in chunks."""
    with sessions() as session:
        rows = session.execute(
            select(BatchLine.line, BatchLine.custom_id, BatchLine.state, BatchLine.result)
            .where(BatchLine.batch_id == batch_id)
            .order_by(BatchLine.line)
            .execution_options(yield_per=500)
        )
        yield from ((line, custom_id, state, result) for line, custom_id, state, result in rows)


def complete_finalization(
    sessions: sessionmaker[Session],
    batch: BatchJob,
    owner: str,
    output: FileInfo | None,
    errors: FileInfo | None,
    now: float,
) -> bool:
    final = batch.final_status or "completed"
    with write_session(sessions) as session:
        values: dict[str, object] = {
            "status": final,
            _FINAL_TIME[final]: now,
            "output_file_id": output.id if output else None,
            "error_file_id": errors.id if errors else None,
            "lease_owner": None,
            "lease_expires_at": None,
        }
        done = session.execute(
            update(BatchJob)
            .where(BatchJob.id == batch.id, BatchJob.lease_owner == owner, BatchJob.final_status == final)
            .values(**values)
        ).rowcount
        if done != 1:
            return False
        for info in (output, errors):
            if info is not None:
                new_file_row(session, info)
        return True


def in_progress_ids(sessions: sessionmaker[Session], batch_ids: Sequence[str]) -> list[str]:
    with sessions() as session:
        return list(
            session.scalars(
                select(BatchJob.id).where(BatchJob.id.in_(list(batch_ids)), BatchJob.status == "in_progress")
            )
        )
