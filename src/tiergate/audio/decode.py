"""Decode any container FFmpeg reads (flac, mp3, mp4, m4a, ogg, wav, webm, ...) to 16 kHz mono.

Whisper hears 16 kHz mono, and GroqCloud documents the same: only the first audio track is used and
it is downsampled. The source is read straight from the caller's file object (the spooled upload),
so the upload is never copied into a second buffer; only the decoded samples are new.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

import av
import numpy as np

SAMPLE_RATE = 16_000


class AudioDecodeError(Exception):
    """The bytes are not audio FFmpeg can decode; the message is safe to show the client."""


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


def decode_audio(source: BinaryIO) -> DecodedAudio:
    """Decode the first audio track of `source`; AudioDecodeError for anything that is not audio."""
    source.seek(0)
    chunks: list[np.ndarray] = []
    try:
        with av.open(source, mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioDecodeError("The file has no audio track.")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            for frame in container.decode(stream):
                chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
            chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    except AudioDecodeError:
        raise
    except (av.FFmpegError, ValueError, OSError, EOFError) as exc:
        # FFmpeg's own error names say what was wrong ("Invalid data found when processing input").
        reason = getattr(exc, "strerror", None) or "the data is not a supported audio format"
        raise AudioDecodeError(f"The audio file could not be decoded: {reason}.") from exc
    if not chunks:
        return DecodedAudio(np.zeros(0, dtype=np.float32))
    samples = np.concatenate(chunks).astype(np.float32)
    samples /= 32768.0
    return DecodedAudio(samples)
