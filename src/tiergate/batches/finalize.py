"""Finalization: assemble the output and error files from the persisted per-line results.

Results live in line rows until here, so whatever crashed before, each line lands in exactly one
file exactly once. Lines stopped by expiry get their `batch_expired` error line now. A crash
mid-assembly leaves an orphan blob at worst; the batch's lease runs out and another pass redoes it.
"""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from tiergate import ids
from tiergate.batches import formats
from tiergate.store import batches_repo
from tiergate.store.blobs import BlobStore, BlobWriter
from tiergate.store.files_repo import FileInfo
from tiergate.store.models import BatchJob

EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."


class _ResultFile:
    """One output or error file, opened on its first line (a batch without failures has no error file)."""

    def __init__(self, blobs: BlobStore, batch: BatchJob, kind: str, now: float) -> None:
        self.blobs = blobs
        self.batch = batch
        self.kind = kind
        self.now = now
        self.id = ids.file_id()
        self.writer: BlobWriter | None = None
        self.bytes = 0
        self.lines = 0

    def add(self, line: str) -> None:
        if self.writer is None:
            self.writer = self.blobs.writer(self.id)
        data = line.encode() + b"\n"
        self.writer.write(data)
        self.bytes += len(data)
        self.lines += 1

    def commit(self) -> FileInfo | None:
        if self.writer is None:
            return None
        self.writer.commit()
        filename = f"{self.batch.id}_{self.kind}.jsonl"
        return FileInfo(
            self.id,
            self.batch.project_id,
            filename,
            "batch_output",
            self.bytes,
            self.lines,
            self.id,
            self.now,
        )

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()


def finalize_batch(
    sessions: sessionmaker[Session], blobs: BlobStore, batch: BatchJob, owner: str, now: float
) -> bool:
    """Write the result files and move the batch to its final status (blocking; run it in a thread)."""
    output = _ResultFile(blobs, batch, "output", now)
    errors = _ResultFile(blobs, batch, "error", now)
    try:
        for _line, custom_id, state, result in batches_repo.iter_results(sessions, batch.id):
            if state == "done" and result is not None:
                output.add(result)
            elif state == "failed" and result is not None:
                errors.add(result)
            elif state == "expired":
                errors.add(formats.error_line(custom_id, "batch_expired", EXPIRED_MESSAGE))
        output_info, error_info = output.commit(), errors.commit()
    except BaseException:
        output.abort()
        errors.abort()
        raise
    if batches_repo.complete_finalization(sessions, batch, owner, output_info, error_info, now):
        return True
    for info in (output_info, error_info):
        if info is not None:
            blobs.delete(info.blob_key)
    return False
