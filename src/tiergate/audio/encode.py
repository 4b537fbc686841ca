"""Encode synthesized speech (16-bit mono PCM at the voice's rate) as it arrives, for streaming.

Each format is an FFmpeg muxer writing to a sink without `seek`, so the muxer writes headers that
need no rewind (a WAV's sizes stay "unknown", which every decoder accepts) and every chunk of PCM
fed in can go out to the client at once. `sample_rate` resamples on the way.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import av
import numpy as np


@dataclass(frozen=True)
class OutputFormat:
    container: str
    codec: str
    media_type: str
    # Rates the codec takes; None means any. Opus only runs at these, so ogg is resampled to them.
    rates: tuple[int, ...] | None = None


FORMATS: dict[str, OutputFormat] = {
    "wav": OutputFormat("wav", "pcm_s16le", "audio/wav"),
    "mp3": OutputFormat("mp3", "libmp3lame", "audio/mpeg"),
    "flac": OutputFormat("flac", "flac", "audio/flac"),
    "ogg": OutputFormat("ogg", "libopus", "audio/ogg", rates=(8000, 12000, 16000, 24000, 48000)),
    # mu-law samples in a WAV container (format tag 7): a WAV file, so audio/wav. audio/basic
    # (RFC 2046) names headerless 8 kHz mu-law, which this is not.
    "mulaw": OutputFormat("wav", "pcm_mulaw", "audio/wav"),
}


class _Sink:
    """A write-only file for the muxer: bytes collect here until the caller takes them."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data, self._parts = b"".join(self._parts), []
        return data


class SpeechEncoder:
    """feed(pcm) -> encoded bytes ready so far; finish() -> the rest. One instance per response."""

    def __init__(self, fmt: str, input_rate: int, output_rate: int | None = None) -> None:
        spec = FORMATS[fmt]
        rate = output_rate or input_rate
        if spec.rates is not None and rate not in spec.rates:
            rate = min(spec.rates, key=lambda r: (abs(r - rate), -r))
        self.media_type = spec.media_type
        self.sample_rate = rate
        self._input_rate = input_rate
        self._sink = _Sink()
        self._container = av.open(self._sink, mode="w", format=spec.container)
        self._stream = self._container.add_stream(spec.codec, rate=rate, layout="mono")
        sample_format = self._stream.codec_context.codec.audio_formats[0].name
        self._resampler = av.AudioResampler(format=sample_format, layout="mono", rate=rate)
        self._odd = b""
        self._closed = False

    def feed(self, pcm: bytes) -> bytes:
        pcm = self._odd + pcm
        whole = len(pcm) - len(pcm) % 2
        self._odd = pcm[whole:]
        if whole:
            frame = av.AudioFrame.from_ndarray(
                np.frombuffer(pcm[:whole], dtype=np.int16).reshape(1, -1), format="s16", layout="mono"
            )
            frame.sample_rate = self._input_rate
            self._encode(self._resampler.resample(frame))
        return self._sink.take()

    def finish(self) -> bytes:
        if not self._closed:
            self._closed = True
            self._encode(self._resampler.resample(None))
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
        return self._sink.take()

    def close(self) -> None:
        """Free the muxer without finishing (a response refused or cut short); finish() does both."""
        if not self._closed:
            self._closed = True
            with contextlib.suppress(av.FFmpegError):
                self._container.close()

    def _encode(self, frames: list[av.AudioFrame]) -> None:
        for frame in frames:
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
