"""Decoding uploads to 16 kHz mono and encoding speech for streaming, over real FFmpeg codecs."""

from __future__ import annotations

import io
import tracemalloc
import wave

import numpy as np
import pytest

from tiergate.audio.decode import SAMPLE_RATE, AudioDecodeError, AudioTooLong, decode_audio
from tiergate.audio.encode import FORMATS, SpeechEncoder

VOICE_RATE = 22_050


def sine(seconds: float, rate: int = VOICE_RATE, hz: float = 440.0) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * hz * t) * 12_000).astype("<i2").tobytes()


def encode(fmt: str, pcm: bytes, output_rate: int | None = None, piece: int = 4_001) -> tuple[bytes, int]:
    """Feed the PCM in odd-sized pieces, as a pipe delivers it; return the bytes and how many came early."""
    encoder = SpeechEncoder(fmt, VOICE_RATE, output_rate)
    out, early = [], 0
    for start in range(0, len(pcm), piece):
        data = encoder.feed(pcm[start : start + piece])
        early += len(data)
        out.append(data)
    out.append(encoder.finish())
    return b"".join(out), early


@pytest.mark.parametrize("fmt", ["wav", "mp3", "flac", "ogg", "mulaw"])
def test_every_speech_format_decodes_back_to_the_same_duration(fmt: str) -> None:
    data, early = encode(fmt, sine(2.0))
    assert early > 0  # bytes leave before the end: the response can stream
    audio = decode_audio(io.BytesIO(data))
    assert audio.duration == pytest.approx(2.0, abs=0.08)
    assert not audio.silent


def test_sample_rate_is_resampled_and_ogg_snaps_to_an_opus_rate() -> None:
    assert SpeechEncoder("wav", VOICE_RATE, 8000).sample_rate == 8000
    assert SpeechEncoder("ogg", VOICE_RATE, 22050).sample_rate == 24000
    data, _ = encode("wav", sine(1.0), output_rate=16000)
    with wave.open(io.BytesIO(data)) as reader:
        assert reader.getframerate() == 16000


def test_decoding_gives_16k_mono_float_samples_from_a_stereo_file() -> None:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(44_100)
        mono = np.frombuffer(sine(1.5, rate=44_100), dtype="<i2")
        out.writeframes(np.repeat(mono, 2).tobytes())
    audio = decode_audio(buffer)
    assert audio.samples.dtype == np.float32
    assert len(audio.samples) == pytest.approx(1.5 * SAMPLE_RATE, abs=200)
    assert 0.3 < float(np.abs(audio.samples).max()) <= 1.0


def test_random_bytes_are_an_audio_decode_error_not_a_crash() -> None:
    with pytest.raises(AudioDecodeError, match="could not be decoded"):
        decode_audio(io.BytesIO(bytes(range(256)) * 20))


def test_digital_silence_is_flagged() -> None:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16_000)
        out.writeframes(b"\0\0" * 8000)
    audio = decode_audio(buffer)
    assert audio.silent and audio.duration == pytest.approx(0.5)


def wav_of(pcm: bytes, rate: int = VOICE_RATE) -> io.BytesIO:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm)
    return buffer


def test_audio_longer_than_the_duration_limit_is_refused_while_decoding() -> None:
    source = wav_of(sine(5.0))
    with pytest.raises(AudioTooLong, match="longer than the limit of 2 s"):
        decode_audio(source, max_seconds=2.0)
    assert decode_audio(source, max_seconds=5.5).duration == pytest.approx(5.0, abs=0.01)


def test_a_stream_without_a_declared_length_still_decodes_whole() -> None:
    # The speech encoder's WAV says "length unknown", so the sample buffer starts from a guess
    # and has to grow (past its first minute) while decoding.
    data, _ = encode("flac", sine(75.0), piece=64_000)
    audio = decode_audio(io.BytesIO(data))
    assert audio.duration == pytest.approx(75.0, abs=0.1)
    assert not audio.silent


def test_decoding_holds_about_one_copy_of_the_samples() -> None:
    # Collecting int16 chunks, concatenating and converting held 2 + 2 + 4 bytes a sample at peak.
    source = wav_of(sine(60.0, rate=SAMPLE_RATE), rate=SAMPLE_RATE)
    tracemalloc.start()
    try:
        audio = decode_audio(source)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert audio.samples.nbytes == 60 * SAMPLE_RATE * 4
    assert peak < 1.25 * audio.samples.nbytes, peak


def test_mulaw_is_a_wav_file_and_is_sent_as_audio_wav() -> None:
    data, _ = encode("mulaw", sine(0.5))
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    assert int.from_bytes(data[20:22], "little") == 7  # WAVE_FORMAT_MULAW
    assert FORMATS["mulaw"].media_type == "audio/wav"


def test_closing_an_unfinished_encoder_is_safe_and_idempotent() -> None:
    encoder = SpeechEncoder("mp3", VOICE_RATE)
    encoder.feed(sine(0.2))
    encoder.close()
    encoder.close()
    encoder.finish()  # after close() there is nothing left to finish, and no error
