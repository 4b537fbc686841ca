"""File metadata in the SQL store; every query is scoped to one project."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from tiergate.store.db import write_session
from tiergate.store.models import StoredFile


@dataclass(frozen=True, slots=True)
class FileInfo:
    id: str
    project_id: str
    filename: str
    purpose: str
    bytes: int
    lines: int
    blob_key: str
    created_at: float


def _info(row: StoredFile) -> FileInfo:
    return FileInfo(
        row.id, row.project_id, row.filename, row.purpose, row.bytes, row.lines, row.blob_key, row.created_at
    )


def add_file(sessions: sessionmaker[Session], info: FileInfo) -> None:
    with write_session(sessions) as session:
        new_file_row(session, info)


def new_file_row(session: Session, info: FileInfo) -> None:
    """Add a file row inside a caller's transaction (batch finalization commits it with the batch)."""
    session.add(
        StoredFile(
            id=info.id,
            project_id=info.project_id,
            filename=info.filename,
            purpose=info.purpose,
            bytes=info.bytes,
            lines=info.lines,
            blob_key=info.blob_key,
            created_at=info.created_at,
        )
    )


def get_file(sessions: sessionmaker[Session], project_id: str, file_id: str) -> FileInfo | None:
    with sessions() as session:
        row = session.scalars(
            select(StoredFile).where(StoredFile.id == file_id, StoredFile.project_id == project_id)
        ).one_or_none()
        return _info(row) if row is not None else None


def list_files(
    sessions: sessionmaker[Session], project_id: str, purpose: str | None = None
) -> list[FileInfo]:
    with sessions() as session:
        query = select(StoredFile).where(StoredFile.project_id == project_id)
        if purpose:
            query = query.where(StoredFile.purpose == purpose)
        rows = session.scalars(query.order_by(StoredFile.created_at.desc(), StoredFile.id.desc()))
        return [_info(row) for row in rows]


def delete_file(sessions: sessionmaker[Session], project_id: str, file_id: str) -> FileInfo | None:
    """Remove the row and return what it was (the caller deletes the blob after the commit)."""
    with write_session(sessions) as session:
        row = session.scalars(
            select(StoredFile).where(StoredFile.id == file_id, StoredFile.project_id == project_id)
        ).one_or_none()
        if row is None:
            return None
        info = _info(row)
        session.execute(delete(StoredFile).where(StoredFile.id == file_id))
        return info
