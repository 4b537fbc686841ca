"""Weights assembly: order, integrity, idempotence, and the `packages:` source format."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tiergate.engines.base import ModelSpec
from tiergate.engines.weights import (
    WeightsIntegrityError,
    WeightsUnavailable,
    assemble,
    ensure_weights,
    package_parts,
)

CHUNKS = [b"GGUF" + bytes(range(256)) * 3, b"\x00middle\xff" * 1000, b"tail"]
WHOLE = b"".join(CHUNKS)
SHA = hashlib.sha256(WHOLE).hexdigest()


@pytest.fixture
def parts(tmp_path: Path) -> list[Path]:
    paths = []
    for i, chunk in enumerate(CHUNKS, start=1):
        path = tmp_path / "src" / f"part{i:02d}.bin"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(chunk)
        paths.append(path)
    return paths


def test_chunks_are_joined_in_the_given_order_and_a_marker_records_the_hash(
    parts: list[Path], tmp_path: Path
) -> None:
    dest = tmp_path / "models" / "m.gguf"
    assert assemble(parts, dest, SHA) == dest
    assert dest.read_bytes() == WHOLE
    assert SHA in (tmp_path / "models" / "m.gguf.sha256").read_text()
    assert not [p for p in dest.parent.iterdir() if p.name.endswith(".partial")]


def test_a_hash_mismatch_refuses_to_load_and_leaves_no_file(parts: list[Path], tmp_path: Path) -> None:
    dest = tmp_path / "models" / "m.gguf"
    with pytest.raises(WeightsIntegrityError):
        assemble(list(reversed(parts)), dest, SHA)
    assert list(dest.parent.iterdir()) == []


def test_a_verified_file_is_not_reassembled_or_rehashed(parts: list[Path], tmp_path: Path) -> None:
    dest = tmp_path / "models" / "m.gguf"
    assemble(parts, dest, SHA)
    inode = dest.stat().st_ino
    # Change a source chunk: a re-join would now fail the hash, so success proves no re-join.
    parts[0].write_bytes(b"X" * len(CHUNKS[0]))
    assert assemble(parts, dest, SHA) == dest
    assert dest.stat().st_ino == inode


def test_a_missing_marker_means_hash_again_then_trust(parts: list[Path], tmp_path: Path) -> None:
    dest = tmp_path / "models" / "m.gguf"
    assemble(parts, dest, SHA)
    marker = dest.with_name("m.gguf.sha256")
    marker.unlink()
    inode = dest.stat().st_ino
    assemble(parts, dest, SHA)
    assert dest.stat().st_ino == inode  # verified in place, not rebuilt
    assert marker.is_file()


def test_a_corrupted_file_of_the_right_size_is_rebuilt_from_the_chunks(
    parts: list[Path], tmp_path: Path
) -> None:
    dest = tmp_path / "models" / "m.gguf"
    assemble(parts, dest, SHA)
    dest.write_bytes(b"\x00" * len(WHOLE))  # same size, new mtime: the marker no longer matches
    os.utime(dest, ns=(1, 1))
    assemble(parts, dest, SHA)
    assert dest.read_bytes() == WHOLE


def test_a_file_of_the_wrong_size_is_rebuilt(parts: list[Path], tmp_path: Path) -> None:
    dest = tmp_path / "models" / "m.gguf"
    dest.parent.mkdir()
    dest.write_bytes(b"short")
    assemble(parts, dest, None)
    assert dest.read_bytes() == WHOLE


def test_a_missing_chunk_is_reported_as_unavailable(parts: list[Path], tmp_path: Path) -> None:
    parts[1].unlink()
    with pytest.raises(WeightsUnavailable):
        assemble(parts, tmp_path / "m.gguf", SHA)


def test_a_plain_path_source_is_used_in_place_after_its_hash_checks(tmp_path: Path) -> None:
    model = tmp_path / "model.gguf"
    model.write_bytes(WHOLE)
    spec = ModelSpec(id="org/model", source=str(model), sha256=SHA)
    assert ensure_weights(spec, tmp_path / "data" / "models") == model
    assert (tmp_path / "data" / "models" / "org--model.sha256").is_file()
    bad = ModelSpec(id="org/model", source=str(model), sha256="0" * 64)
    with pytest.raises(WeightsIntegrityError):
        ensure_weights(bad, tmp_path / "data" / "models")


def test_a_missing_plain_path_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailable):
        ensure_weights(ModelSpec(id="m", source=str(tmp_path / "nope.gguf")), tmp_path)


@pytest.fixture
def chunk_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Three importable packages `tg_fake_partN` holding `data/partNN.bin`, like the `model` extra."""
    root = tmp_path / "site"
    for i, chunk in enumerate(CHUNKS, start=1):
        package = root / f"tg_fake_part{i}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "data" / f"part{i:02d}.bin").write_bytes(chunk)
    monkeypatch.syspath_prepend(str(root))
    return "packages:tg_fake_part{1..3}/data/part{NN}.bin"


def test_package_source_ranges_expand_in_order_with_zero_padding(chunk_packages: str) -> None:
    paths = package_parts(chunk_packages)
    assert [p.relative_to(p.parents[2]).as_posix() for p in paths] == [
        "tg_fake_part1/data/part01.bin",
        "tg_fake_part2/data/part02.bin",
        "tg_fake_part3/data/part03.bin",
    ]


def test_a_comma_list_source_keeps_its_order(chunk_packages: str) -> None:
    paths = package_parts("package:tg_fake_part3/data/part03.bin, tg_fake_part1/data/part01.bin")
    assert [p.name for p in paths] == ["part03.bin", "part01.bin"]


def test_an_uninstalled_package_is_unavailable() -> None:
    with pytest.raises(WeightsUnavailable, match="not installed"):
        package_parts("packages:tiergate_no_such_package_xyz/data/part01.bin")


def test_ensure_weights_assembles_package_chunks_into_the_data_dir(
    chunk_packages: str, tmp_path: Path
) -> None:
    spec = ModelSpec(id="Org/Tiny", source=chunk_packages, sha256=SHA)
    path = ensure_weights(spec, tmp_path / "data" / "models")
    assert path == tmp_path / "data" / "models" / "Org--Tiny.gguf"
    assert path.read_bytes() == WHOLE
