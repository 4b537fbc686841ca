"""Speech to text with faster-whisper (CTranslate2) on the CPU.

The engine owns its threads: a pool with one worker per slot runs `WhisperModel.transcribe`, so
the event loop never blocks and no more transcriptions run at once than the scheduler granted
(a transcription whose client left still finishes its current segment, then stops, inside the pool).
It knows nothing of tiers, limits or HTTP; it gets 16 kHz mono samples and returns a Transcript.
"""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from faster_whisper import WhisperModel

from tiergate.audio.languages import LANGUAGE_NAMES
from tiergate.engines.base import ModelSpec

# Whisper's fallback schedule: at temperature 0 the decoder retries hotter when the result looks
# wrong (compression ratio, log probability), which is what GroqCloud documents for temperature 0.
_FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
LANGUAGE_CODES = frozenset(LANGUAGE_NAMES)


@dataclass(frozen=True)
class TranscribeOptions:
    task: str = "transcribe"  # or "translate" (to English)
    language: str | None = None
    prompt: str | None = None
    temperature: float = 0.0
    word_timestamps: bool = False


@dataclass
class Transcript:
    text: str
    language: str
    duration: float
    segments: list[dict[str, Any]] = field(default_factory=list)
    words: list[dict[str, Any]] = field(default_factory=list)


class TranscriptionCancelled(Exception):
    """The caller gave up; the worker stopped between segments."""


class WhisperEngine:
    """One loaded CTranslate2 whisper model serving `slots` transcriptions at a time."""

    def __init__(self, spec: ModelSpec, model_dir: Path, *, threads: int = 0, slots: int = 1) -> None:
        self.spec = spec
        self._slots = max(1, int(spec.options.get("slots", slots)))
        self.beam_size = int(spec.options.get("beam_size", 5))
        self._model = WhisperModel(
            str(model_dir),
            device="cpu",
            compute_type=str(spec.options.get("compute_type", "int8")),
            cpu_threads=threads or os.cpu_count() or 1,
            num_workers=self._slots,
        )
        self._pool = ThreadPoolExecutor(self._slots, thread_name_prefix=f"whisper-{spec.id}")

    @property
    def slots(self) -> int:
        return self._slots

    @property
    def multilingual(self) -> bool:
        """English-only models (`.en`) can neither take another language nor translate."""
        return bool(self._model.model.is_multilingual)

    def count_tokens(self, text: str) -> int:
        """Tokens of a prompt in the model's own tokenizer (GroqCloud allows 224)."""
        return len(self._model.hf_tokenizer.encode(text, add_special_tokens=False).ids)

    async def transcribe(self, samples: np.ndarray, options: TranscribeOptions) -> Transcript:
        cancelled = threading.Event()
        future = asyncio.get_running_loop().run_in_executor(
            self._pool, self._transcribe, samples, options, cancelled
        )
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            cancelled.set()
            # The worker ends with TranscriptionCancelled at its next segment; nobody awaits it now.
            future.add_done_callback(lambda done: done.cancelled() or done.exception())
            raise

    def _transcribe(
        self, samples: np.ndarray, options: TranscribeOptions, cancelled: threading.Event
    ) -> Transcript:
        temperature = _FALLBACK_TEMPERATURES if options.temperature <= 0 else options.temperature
        segments, info = self._model.transcribe(
            samples,
            language=options.language if self.multilingual else "en",
            task=options.task,
            beam_size=self.beam_size,
            initial_prompt=options.prompt or None,
            temperature=temperature,
            word_timestamps=options.word_timestamps,
            vad_filter=False,
        )
        out = Transcript(text="", language=info.language, duration=float(info.duration))
        texts: list[str] = []
        for segment in segments:
            if cancelled.is_set():
                raise TranscriptionCancelled()
            texts.append(segment.text)
            out.segments.append(_segment(segment))
            for word in segment.words or ():
                out.words.append({"word": word.word.strip(), "start": _t(word.start), "end": _t(word.end)})
        out.text = "".join(texts).strip()
        return out

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _t(seconds: float) -> float:
    return round(float(seconds), 2)


def _segment(segment: Any) -> dict[str, Any]:
    """A segment in the API's shape (ids are 0-based there, 1-based in faster-whisper)."""
    return {
        "id": segment.id - 1,
        "seek": int(segment.seek),
        "start": _t(segment.start),
        "end": _t(segment.end),
        "text": segment.text,
        "tokens": [int(t) for t in segment.tokens],
        "temperature": float(segment.temperature or 0.0),
        "avg_logprob": float(segment.avg_logprob),
        "compression_ratio": float(segment.compression_ratio),
        "no_speech_prob": float(segment.no_speech_prob),
    }
