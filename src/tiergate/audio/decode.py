"""Decode any container FFmpeg reads (flac, mp3, mp4, m4a, ogg, wav, webm, ...) to 16 kHz mono.

Whisper hears 16 kHz mono, and GroqCloud documents the same: only the first audio track is used and
it is downsampled. The source is read straight from the caller's file object (the spooled upload),
so the upload is never copied into a second buffer.

A size limit does not bound the decoded length: 25 MB of low-bitrate Opus is days of audio, and
each second is 64 kB of float32. So decoding stops as soon as `max_seconds` is passed, and samples go
frame by frame into one float32 buffer sized from the declared duration, never a list of chunks that
is concatenated (which would hold the audio twice at the end).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import BinaryIO

import av
import numpy as np

SAMPLE_RATE = 16_000
# When the container declares no duration, start with a minute and double as needed.
_FIRST_GUESS = 60 * SAMPLE_RATE


class AudioDecodeError(Exception):
    """The bytes are not audio FFmpeg can decode; the message is safe to show the client."""


class AudioTooLong(AudioDecodeError):
    """The audio goes on past the duration limit; decoding stopped there."""


@dataclass(frozen=True)
class DecodedAudio:
    samples: np.ndarray  # float32 in [-1, 1], mono, SAMPLE_RATE

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE

    @property
    def silent(self) -> bool:
        """No sample differs from zero: digital silence, nothing to transcribe."""
        return not np.any(self.samples)


class _SampleBuffer:
    """float32 samples written in place; grows by doubling, never past `limit` samples."""

    def __init__(self, capacity: int, limit: int) -> None:
        self._limit = limit
        self._data = np.empty(max(1, min(capacity, limit)), dtype=np.float32)
        self._length = 0

    def append(self, s16: np.ndarray) -> bool:
        """Add int16 samples; False (and nothing added) when they would pass the limit."""
        end = self._length + len(s16)
        if end > self._limit:
            return False
        if end > len(self._data):
            grown = np.empty(min(self._limit, max(end, 2 * len(self._data))), dtype=np.float32)
            grown[: self._length] = self._data[: self._length]
            self._data = grown
        out = self._data[self._length : end]
        out[:] = s16  # int16 -> float32 in place, then scaled: no temporary the size of the audio
        out *= 1.0 / 32768.0
        self._length = end
        return True

    def samples(self) -> np.ndarray:
        return self._data[: self._length]


def decode_audio(source: BinaryIO, max_seconds: float = math.inf) -> DecodedAudio:
    """Decode the first audio track of `source`; AudioDecodeError for anything that is not audio,
    AudioTooLong as soon as more than `max_seconds` have been decoded."""
    source.seek(0)
    limit = int(max_seconds * SAMPLE_RATE) if math.isfinite(max_seconds) else 2**62
    try:
        with av.open(source, mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioDecodeError("The file has no audio track.")
            stream = container.streams.audio[0]
            buffer = _SampleBuffer(_declared_samples(container, stream), limit)
            resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            for frame in itertools.chain(container.decode(stream), (None,)):  # None flushes
                for out in resampler.resample(frame):
                    if not buffer.append(out.to_ndarray().reshape(-1)):
                        raise AudioTooLong(
                            f"The audio is longer than the limit of {_clock(max_seconds)}; "
                            "split it into shorter files."
                        )
    except (av.FFmpegError, ValueError, OSError, EOFError) as exc:
        # FFmpeg's own error names say what was wrong ("Invalid data found when processing input").
        reason = getattr(exc, "strerror", None) or "the data is not a supported audio format"
        raise AudioDecodeError(f"The audio file could not be decoded: {reason}.") from exc
    return DecodedAudio(buffer.samples())


def _declared_samples(container: av.container.InputContainer, stream: av.AudioStream) -> int:
    """The 16 kHz sample count the container claims (a hint only: headers can lie either way)."""
    seconds: float | None = None
    if stream.duration is not None and stream.time_base is not None:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        seconds = container.duration / av.time_base
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        return _FIRST_GUESS
    return int(seconds * SAMPLE_RATE) + SAMPLE_RATE


def _clock(seconds: float) -> str:
    """2 h, 90 min, 45 s: the limit as a person would say it."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)} min"
    return f"{seconds:g} s"
