"""Upload a batch input file: stream it into the blob store while checking it is strict JSONL.

The body arrives in chunks (already spooled to disk by the multipart parser); we never hold more
than one chunk plus one partial line in memory, so a 200 MB file costs a few MB of RAM. Any problem
aborts the blob write and raises InvalidRequest naming the line.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import orjson

from tiergate import ids
from tiergate.errors import InvalidRequest
from tiergate.store.blobs import BlobStore
from tiergate.store.files_repo import FileInfo

UPLOAD_PURPOSES = ("batch",)


@dataclass(frozen=True, slots=True)
class FileLimits:
    max_bytes: int
    max_lines: int


def check_upload(filename: str, purpose: str) -> None:
    if purpose not in UPLOAD_PURPOSES:
        raise InvalidRequest(
            f"Invalid value for `purpose`: {purpose!r}. Supported values are: 'batch'.",
            param="purpose",
            code="invalid_value",
        )
    if not filename.lower().endswith(".jsonl"):
        raise InvalidRequest(
            "Invalid file format: batch input files must be JSONL files with the `.jsonl` extension.",
            param="file",
            code="invalid_file_format",
        )


class _LineChecker:
    """Feeds chunks, splits them into lines and checks each one is a JSON object."""

    def __init__(self, limits: FileLimits) -> None:
        self.limits = limits
        self.size = 0
        self.lines = 0
        # Line numbers in messages are physical (1-based), as an editor shows them.
        self.physical = 0
        self._partial = b""

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limits.max_bytes:
            raise InvalidRequest(
                f"File too large: the limit for batch files is {self.limits.max_bytes} bytes.",
                param="file",
                code="file_too_large",
            )
        data = self._partial + chunk
        *complete, self._partial = data.split(b"\n")
        for line in complete:
            self._check(line)

    def finish(self) -> None:
        if self._partial.strip():
            self._check(self._partial)
        self._partial = b""
        if self.lines == 0:
            raise InvalidRequest("The file is empty: a batch file needs at least one line.", param="file")

    def _check(self, raw: bytes) -> None:
        self.physical += 1
        if not raw.strip():
            # A trailing blank line is common; blank lines elsewhere are not requests but harmless.
            return
        self.lines += 1
        if self.lines > self.limits.max_lines:
            raise InvalidRequest(
                f"Too many lines: a batch file may have at most {self.limits.max_lines} lines.",
                param="file",
                code="too_many_lines",
            )
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise InvalidRequest(
                f"Invalid JSON on line {self.physical}: each line must be one complete JSON object.",
                param="file",
                code="invalid_jsonl",
                extra={"line": self.physical},
            ) from None
        if not isinstance(value, dict):
            raise InvalidRequest(
                f"Line {self.physical} is not a JSON object: each line must be one JSON object.",
                param="file",
                code="invalid_jsonl",
                extra={"line": self.physical},
            )


def store_upload(
    blobs: BlobStore,
    chunks: Iterable[bytes],
    *,
    project_id: str,
    filename: str,
    purpose: str,
    limits: FileLimits,
    now: float,
) -> FileInfo:
    """Write the upload to a new blob, validating as it streams; the caller records the metadata."""
    check_upload(filename, purpose)
    file_id = ids.file_id()
    checker = _LineChecker(limits)
    writer = blobs.writer(file_id)
    try:
        for chunk in chunks:
            checker.feed(chunk)
            writer.write(chunk)
        checker.finish()
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return FileInfo(file_id, project_id, filename, purpose, checker.size, checker.lines, file_id, now)
