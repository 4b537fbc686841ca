"""File bytes behind one small interface: a folder in the data dir now, an object store later.

Writes are atomic (a temporary name, renamed on commit), so a crash mid-upload never leaves a
half file under a real key. All calls are blocking; async callers run them in a thread.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

CHUNK = 1024 * 1024
_KEY = re.compile(r"^[A-Za-z0-9_.-]+$")


class BlobWriter(Protocol):
    def write(self, data: bytes) -> None: ...

    def commit(self) -> None:
        """Make the bytes visible under the key; until then nothing is."""
        ...

    def abort(self) -> None: ...


class BlobStore(Protocol):
    def writer(self, key: str) -> BlobWriter: ...

    def open(self, key: str) -> BinaryIO: ...

    def chunks(self, key: str, size: int = CHUNK) -> Iterator[bytes]: ...

    def delete(self, key: str) -> None: ...

    def exists(self, key: str) -> bool: ...


class _FolderWriter:
    def __init__(self, final: Path) -> None:
        self._final = final
        self._temp = final.with_name(f".{final.name}.{os.getpid()}.{os.urandom(4).hex()}.part")
        self._handle: BinaryIO | None = self._temp.open("wb")

    def write(self, data: bytes) -> None:
        assert self._handle is not None, "writer already closed"
        self._handle.write(data)

    def commit(self) -> None:
        handle, self._handle = self._handle, None
        if handle is None:
            return
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        os.replace(self._temp, self._final)

    def abort(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.close()
        self._temp.unlink(missing_ok=True)


class FolderBlobStore:
    """Blobs as files in one folder (`<data_dir>/files` by default)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        # Keys are ids we make ourselves; refuse anything that could walk out of the folder.
        if not _KEY.match(key) or key.startswith("."):
            raise ValueError(f"invalid blob key {key!r}")
        return self.root / key

    def writer(self, key: str) -> BlobWriter:
        return _FolderWriter(self._path(key))

    def open(self, key: str) -> BinaryIO:
        return self._path(key).open("rb")

    def chunks(self, key: str, size: int = CHUNK) -> Iterator[bytes]:
        with self.open(key) as handle:
            while chunk := handle.read(size):
                yield chunk

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def copy_from(self, key: str, source: BinaryIO) -> None:
        writer = self.writer(key)
        try:
            shutil.copyfileobj(source, writer)  # type: ignore[arg-type]
            writer.commit()
        except BaseException:
            writer.abort()
            raise
