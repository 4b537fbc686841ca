"""Whisper model folders assembled from parts and Piper voices, each file checked against its hash."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from tiergate.engines.audio_assets import WHISPER_FILES, ensure_voices, ensure_whisper_dir
from tiergate.engines.audio_models import AUDIO_MODELS
from tiergate.engines.base import ModelSpec
from tiergate.engines.weights import WeightsIntegrityError, WeightsUnavailable


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_the_shipped_base_model_is_joined_from_its_two_packages_and_verified(tmp_path: Path) -> None:
    base = next(spec for spec in AUDIO_MODELS if spec.id == "whisper-base")
    folder = ensure_whisper_dir(base, tmp_path)
    assert sorted(p.name for p in folder.iterdir() if not p.name.endswith(".sha256")) == sorted(WHISPER_FILES)
    digest = hashlib.sha256((folder / "model.bin").read_bytes()).hexdigest()
    assert digest == base.sha256
    # A second start trusts the markers instead of joining again.
    mtime = (folder / "model.bin").stat().st_mtime_ns
    assert ensure_whisper_dir(base, tmp_path) == folder
    assert (folder / "model.bin").stat().st_mtime_ns == mtime


def test_a_companion_file_with_the_wrong_hash_refuses_to_load(tmp_path: Path) -> None:
    write(tmp_path / "pkg" / "model.bin", b"weights")
    write(tmp_path / "pkg" / "config.json", b"tampered")
    spec = ModelSpec(
        id="whisper-test",
        engine="whisper",
        source=str(tmp_path / "pkg" / "model.bin"),
        sha256=sha(b"weights"),
        options={
            "files": {"config.json": {"source": str(tmp_path / "pkg" / "config.json"), "sha256": sha(b"x")}}
        },
    )
    with pytest.raises(WeightsIntegrityError):
        ensure_whisper_dir(spec, tmp_path / "models")


def test_a_voice_is_verified_in_place_and_a_bad_hash_is_refused(tmp_path: Path) -> None:
    model = write(tmp_path / "voice.onnx", b"onnx")
    config = write(tmp_path / "voice.onnx.json", b'{"audio": {"sample_rate": 22050}}')
    entry = {"model": str(model), "sha256": sha(b"onnx"), "config_sha256": sha(config.read_bytes())}
    spec = ModelSpec(id="tts", engine="piper", options={"voices": {"joe": entry}})
    [voice] = ensure_voices(spec, tmp_path / "models")
    assert (voice.name, voice.model, voice.config) == ("joe", model, config)
    bad = ModelSpec(id="tts", engine="piper", options={"voices": {"joe": {**entry, "sha256": sha(b"no")}}})
    with pytest.raises(WeightsIntegrityError):
        ensure_voices(bad, tmp_path / "models2")
    with pytest.raises(WeightsUnavailable):
        ensure_voices(ModelSpec(id="tts", engine="piper"), tmp_path)


def test_the_shipped_audio_models_pin_every_file() -> None:
    for spec in AUDIO_MODELS:
        if spec.engine == "whisper":
            assert spec.sha256 and spec.context_window == 448
            assert {name: bool(f["sha256"]) for name, f in spec.options["files"].items()} == {
                "config.json": True,
                "tokenizer.json": True,
                "vocabulary.txt": True,
            }
        else:
            for voice in spec.options["voices"].values():
                assert voice["sha256"] and voice["config_sha256"]


def test_piper_is_found_as_a_command_but_never_imported_into_tiergate() -> None:
    # Piper is GPL: tiergate may run its CLI as a child process, never load it into its own process.
    code = (
        "import sys, tiergate.app\n"
        "from tiergate.engines.piper import piper_command\n"
        "command = piper_command()\n"
        "assert command[1:] == ['-m', 'piper'], command\n"
        "assert not [m for m in sys.modules if m == 'piper' or m.startswith('piper.')]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_a_voice_config_away_from_its_model_is_refused(tmp_path: Path) -> None:
    # Piper reads <model>.json beside the model whatever --config says: refuse a config elsewhere.
    model = write(tmp_path / "voice.onnx", b"onnx")
    write(tmp_path / "voice.onnx.json", b'{"audio": {"sample_rate": 22050}}')
    elsewhere = write(tmp_path / "other" / "voice.json", b'{"audio": {"sample_rate": 16000}}')
    spec = ModelSpec(
        id="tts", engine="piper", options={"voices": {"joe": {"model": str(model), "config": str(elsewhere)}}}
    )
    with pytest.raises(WeightsUnavailable, match="reads its config from"):
        ensure_voices(spec, tmp_path / "models")
