"""Audio end to end with the groq and openai SDKs, real whisper and Piper models, espeak-ng test audio."""

from __future__ import annotations

import io
import json
import os
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import av
import groq
import httpx
import openai
import pytest
from groq.types.audio import Transcription as GroqTranscription
from openai.types.audio import TranscriptionVerbose

from tests.conftest import LiveServer, start_server
from tests.e2e.audio_helpers import (
    BASE,
    GERMAN,
    SENTENCE,
    TINY,
    TTS,
    data_url,
    groq_client,
    has_key_words,
    openai_client,
    seconds_of,
    speak,
    to_mp3,
    tone,
)


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("audio")


@pytest.fixture(scope="module")
def wav(audio_dir: Path) -> Path:
    return speak(audio_dir, SENTENCE)


@pytest.fixture(scope="module")
def tight(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server with only tiny.en, a 60 kB audio limit and 15 audio seconds per hour."""
    data_dir = tmp_path_factory.mktemp("tight")
    config = data_dir / "tiergate.toml"
    config.write_text(
        'load_models = ["whisper-tiny.en"]\nmax_audio_bytes = 60000\n[limits."whisper-tiny.en"]\nash = 15\n'
    )
    live = start_server(data_dir, "--config", str(config))
    yield live
    live.stop()


def test_groq_sdk_transcribes_an_espeak_wav_with_its_key_words(server: LiveServer, wav: Path) -> None:
    raw = groq_client(server).audio.transcriptions.with_raw_response.create(file=wav, model=TINY)
    result = raw.parse()
    assert has_key_words(result.text), result.text
    body = raw.http_response.json()
    assert body["x_groq"]["id"].startswith("req_") and body["x_groq"]["id"] == raw.headers["x-request-id"]
    # A 4-second clip is billed GroqCloud's 10-second minimum.
    assert body["usage"] == {"type": "duration", "seconds": 10.0}
    assert "x-ratelimit-limit-requests" in raw.headers
    GroqTranscription.model_validate(body)


def test_openai_sdk_transcribes_an_mp3_as_plain_text(server: LiveServer, wav: Path) -> None:
    text = openai_client(server).audio.transcriptions.create(
        file=to_mp3(wav), model=TINY, response_format="text"
    )
    assert isinstance(text, str) and has_key_words(text), text


def test_verbose_json_has_segment_metadata_and_word_timestamps(server: LiveServer, wav: Path) -> None:
    result = openai_client(server).audio.transcriptions.create(
        file=wav, model=TINY, response_format="verbose_json", timestamp_granularities=["word", "segment"]
    )
    assert isinstance(result, TranscriptionVerbose)
    assert result.language == "english"
    assert result.duration == pytest.approx(seconds_of(wav), abs=0.05)
    segment = (result.segments or [])[0]
    assert segment.id == 0 and segment.seek == 0 and segment.start == 0.0
    assert 0 < segment.end <= result.duration + 0.5
    assert segment.tokens and segment.avg_logprob < 0 and 0 <= segment.no_speech_prob <= 1
    assert segment.compression_ratio > 0 and segment.temperature == 0.0
    words = result.words or []
    assert "invoice" in [w.word.lower().strip(".,") for w in words]
    starts = [w.start for w in words]
    assert starts == sorted(starts) and all(w.end >= w.start for w in words)
    assert result.model_extra and result.model_extra["x_groq"]["id"].startswith("req_")


def test_translation_with_the_multilingual_model_returns_english(server: LiveServer, audio_dir: Path) -> None:
    german = speak(audio_dir, GERMAN, voice="de", name="german.wav")
    client = groq_client(server)
    detected = client.audio.transcriptions.create(file=german, model=BASE, response_format="verbose_json")
    assert detected.model_extra and detected.model_extra["language"] == "german"
    translated = client.audio.translations.create(file=german, model=BASE, temperature=0.01)
    text = translated.text.lower()
    assert "morning" in text and ("coffee" in text or "milk" in text), text


def test_english_only_model_refuses_translations_and_other_languages(server: LiveServer, wav: Path) -> None:
    client = groq_client(server)
    with pytest.raises(groq.BadRequestError) as translation:
        client.audio.translations.create(file=wav, model=TINY)
    assert translation.value.body["error"]["param"] == "model"
    with pytest.raises(groq.BadRequestError) as language:
        client.audio.transcriptions.create(file=wav, model=TINY, language="fr")
    assert language.value.body["error"]["param"] == "language"
    assert "English-only" in language.value.body["error"]["message"]


def test_speech_round_trip_through_the_openai_and_groq_sdks(server: LiveServer, audio_dir: Path) -> None:
    sentence = "The museum opens at nine thirty every Tuesday morning."
    speech = openai_client(server).audio.speech.create(
        model=TTS, voice="joe", input=sentence, response_format="wav"
    )
    path = audio_dir / "piper.wav"
    path.write_bytes(speech.content)
    assert speech.response.headers["content-type"] == "audio/wav"
    text = groq_client(server).audio.transcriptions.create(file=path, model=TINY).text.lower()
    assert sum(w in text for w in ("museum", "opens", "tuesday", "morning")) >= 3, text
    mp3 = groq_client(server).audio.speech.create(
        model=TTS, voice="Joe", input=sentence, response_format="mp3", sample_rate=24000
    )
    with av.open(io.BytesIO(mp3.read())) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name.startswith("mp3") and stream.sample_rate == 24000


def test_speech_streams_audio_in_chunks_before_the_end(server: LiveServer) -> None:
    long_text = " ".join(["This sentence is spoken one at a time by the speech engine."] * 6)
    body = {"model": TTS, "voice": "joe", "input": long_text, "response_format": "flac"}
    headers = {"authorization": f"Bearer {server.api_key}"}
    with httpx.stream(
        "POST", f"{server.openai_base}/audio/speech", json=body, headers=headers, timeout=120
    ) as response:
        assert response.status_code == 200 and response.headers["transfer-encoding"] == "chunked"
        chunks = [chunk for chunk in response.iter_raw() if chunk]
    assert len(chunks) > 1 and chunks[0].startswith(b"fLaC")


def test_speech_speed_shortens_the_audio(server: LiveServer) -> None:
    client = openai_client(server)
    lengths = []
    for speed in (1.0, 2.0):
        speech = client.audio.speech.create(
            model=TTS, voice="joe", input="Counting slowly: one, two, three, four.", speed=speed
        )
        with av.open(io.BytesIO(speech.content)) as container:
            lengths.append(sum(frame.samples for frame in container.decode(audio=0)))
    assert lengths[1] < 0.7 * lengths[0]


def test_audio_given_by_a_data_url_is_transcribed(server: LiveServer, wav: Path) -> None:
    result = groq_client(server).audio.transcriptions.create(url=data_url(wav), model=TINY)
    assert has_key_words(result.text), result.text


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"response_format": "vtt"}, "response_format"),
        ({"response_format": "srt"}, "response_format"),
        ({"timestamp_granularities[]": "word"}, "timestamp_granularities"),
        ({"temperature": "1.5"}, "temperature"),
        ({"prompt": "invoice " * 300}, "prompt"),
        ({"language": "xx"}, "language"),
    ],
)
def test_invalid_fields_are_400_naming_the_field(
    server: LiveServer, wav: Path, fields: dict[str, str], param: str
) -> None:
    response = httpx.post(
        f"{server.openai_base}/audio/transcriptions",
        headers={"authorization": f"Bearer {server.api_key}"},
        data={"model": TINY, **fields},
        files={"file": ("speech.wav", wav.read_bytes(), "audio/wav")},
        timeout=60,
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_too_short_corrupt_and_silent_audio_are_clear_400s(server: LiveServer, audio_dir: Path) -> None:
    client = groq_client(server)
    corrupt = audio_dir / "corrupt.wav"
    corrupt.write_bytes(os.urandom(4000))
    silent = audio_dir / "silent.wav"
    silent.write_bytes(_wav_of_zeros(16000))
    cases = [
        (tone(audio_dir, 0.005), "audio_too_short"),
        (corrupt, "invalid_audio"),
        (silent, "invalid_audio"),
    ]
    for path, code in cases:
        with pytest.raises(groq.BadRequestError) as error:
            client.audio.transcriptions.create(file=path, model=TINY)
        assert error.value.body["error"]["code"] == code, path


def test_a_request_without_audio_or_with_a_chat_model_is_400(server: LiveServer, wav: Path) -> None:
    client = groq_client(server)
    with pytest.raises(groq.BadRequestError) as missing:
        client.audio.transcriptions.create(model=TINY)
    assert missing.value.body["error"]["code"] == "missing_required_parameter"
    with pytest.raises(groq.BadRequestError) as chat_model:
        client.audio.transcriptions.create(file=wav, model="qwen2.5-coder-0.5b-instruct")
    assert chat_model.value.body["error"]["code"] == "model_not_supported"
    with pytest.raises(groq.BadRequestError) as whisper_chat:
        client.chat.completions.create(model=TINY, messages=[{"role": "user", "content": "hi"}])
    assert whisper_chat.value.body["error"]["code"] == "model_not_supported"


def test_unknown_voice_is_400_listing_the_valid_voices(server: LiveServer) -> None:
    with pytest.raises(openai.BadRequestError) as error:
        openai_client(server).audio.speech.create(model=TTS, voice="alloy", input="Hello there.")
    body = error.value.body
    assert isinstance(body, dict) and body["param"] == "voice"
    assert "joe" in body["message"] and "alloy" in body["message"]


def test_audio_over_the_size_limit_is_413(tight: LiveServer, wav: Path) -> None:
    client = groq.Groq(base_url=tight.root, api_key=tight.api_key, max_retries=0)
    assert wav.stat().st_size > 60000
    with pytest.raises(groq.APIStatusError) as error:
        client.audio.transcriptions.create(file=wav, model=TINY)
    assert error.value.status_code == 413
    big = httpx.post(
        f"{tight.openai_base}/audio/transcriptions",
        headers={"authorization": f"Bearer {tight.api_key}"},
        data={"model": TINY},
        files={"file": ("big.wav", b"\0" * (2 * 1024 * 1024), "audio/wav")},
        timeout=60,
    )
    assert big.status_code == 413


def test_audio_seconds_per_hour_limit_gives_429_with_retry_after(tight: LiveServer, audio_dir: Path) -> None:
    short = speak(audio_dir, "Hello.", name="hello.wav")
    assert short.stat().st_size < 60000
    client = groq.Groq(base_url=tight.root, api_key=tight.api_key, max_retries=0)
    client.audio.transcriptions.create(file=short, model=TINY)  # 10 billed seconds of 15
    with pytest.raises(groq.RateLimitError) as error:
        client.audio.transcriptions.create(file=short, model=TINY)
    assert "audio seconds per hour (ASH)" in error.value.body["error"]["message"]
    assert int(error.value.response.headers["retry-after"]) >= 1


def test_an_audio_batch_transcribes_lines_given_by_data_urls(server: LiveServer, wav: Path) -> None:
    client = groq_client(server)
    lines = [
        {
            "custom_id": "speech-1",
            "method": "POST",
            "url": "/v1/audio/transcriptions",
            "body": {"model": TINY, "url": data_url(wav), "response_format": "verbose_json"},
        },
        {"custom_id": "no-url", "method": "POST", "url": "/v1/audio/transcriptions", "body": {"model": TINY}},
    ]
    content = ("\n".join(json.dumps(line) for line in lines) + "\n").encode()
    file_id = client.files.create(file=("audio.jsonl", content), purpose="batch").id
    batch = client.batches.create(
        input_file_id=file_id, endpoint="/v1/audio/transcriptions", completion_window="24h"
    )
    deadline = time.monotonic() + 120
    while batch.status not in ("completed", "failed", "expired", "cancelled") and time.monotonic() < deadline:
        time.sleep(0.3)
        batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed"
    assert batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (1, 1)
    output = [json.loads(x) for x in client.files.content(batch.output_file_id or "").read().splitlines()]
    body = output[0]["response"]["body"]
    assert output[0]["custom_id"] == "speech-1" and has_key_words(body["text"]), body
    assert body["segments"] and body["x_groq"]["id"] == output[0]["response"]["request_id"]


def _wav_of_zeros(samples: int) -> bytes:
    """A valid 16 kHz mono WAV holding only digital silence."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(b"\0\0" * samples)
    return buffer.getvalue()
