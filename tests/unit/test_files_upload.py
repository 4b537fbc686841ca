"""Upload checks: strict JSONL streamed into the blob store, with the line number on failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiergate.errors import InvalidRequest
from tiergate.service.files import FileLimits, store_upload
from tiergate.store.blobs import FolderBlobStore

LIMITS = FileLimits(max_bytes=1000, max_lines=3)


def upload(
    root: Path, data: bytes, *, filename: str = "in.jsonl", limits: FileLimits = LIMITS, chunk: int = 7
):
    blobs = FolderBlobStore(root)
    chunks = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    return blobs, store_upload(
        blobs, chunks, project_id="p", filename=filename, purpose="batch", limits=limits, now=1.0
    )


def test_valid_jsonl_is_stored_byte_for_byte_across_chunk_boundaries(tmp_path: Path) -> None:
    data = b'{"a": 1}\n{"b": "two"}\n{"c": [3]}'
    blobs, info = upload(tmp_path, data)
    assert info.id.startswith("file_") and len(info.id) == len("file_") + 26
    assert (info.bytes, info.lines) == (len(data), 3)
    assert b"".join(blobs.chunks(info.blob_key)) == data


@pytest.mark.parametrize(
    ("data", "code", "line"),
    [
        (b'{"a": 1}\n{"b": \n', "invalid_jsonl", 2),
        (b'{"a": 1}\n\n[1, 2]\n', "invalid_jsonl", 3),
        (b'{"a":1}\n{"a":1}\n{"a":1}\n{"a":1}\n', "too_many_lines", None),
        (b"\n\n", "invalid_request_error", None),
    ],
)
def test_bad_files_are_refused_with_a_clear_400_and_leave_no_blob(
    tmp_path: Path, data: bytes, code: str, line: int | None
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        upload(tmp_path, data)
    assert caught.value.status == 400 and caught.value.code == code
    if line is not None:
        assert caught.value.extra["line"] == line
        assert f"line {line}" in caught.value.message.lower()
    assert list(tmp_path.iterdir()) == []


def test_files_over_the_size_limit_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest) as caught:
        upload(tmp_path, b'{"a": "' + b"x" * 2000 + b'"}\n', chunk=100)
    assert caught.value.code == "file_too_large"
    assert list(tmp_path.iterdir()) == []


def test_only_jsonl_files_with_purpose_batch_are_accepted(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest) as caught:
        upload(tmp_path, b'{"a": 1}\n', filename="in.csv")
    assert caught.value.param == "file"
    blobs = FolderBlobStore(tmp_path)
    with pytest.raises(InvalidRequest) as caught:
        store_upload(blobs, [b"{}"], project_id="p", filename="a.jsonl", purpose="x", limits=LIMITS, now=0)
    assert caught.value.param == "purpose"


def test_blob_keys_cannot_escape_the_folder(tmp_path: Path) -> None:
    blobs = FolderBlobStore(tmp_path / "files")
    for key in ("../x", "a/b", ".hidden"):
        with pytest.raises(ValueError):
            blobs.writer(key)
