"""Audio request validation: the field-level 400s GroqCloud gives, and the audio size setting."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tiergate.config import Settings
from tiergate.schemas.audio import SpeechRequest, TranscriptionRequest
from tiergate.service.audio import billed_seconds


def error_field(schema: type, **fields: object) -> str:
    with pytest.raises(ValidationError) as caught:
        schema.model_validate(fields)
    return str(caught.value.errors()[0]["loc"][0])


def test_subtitle_formats_are_refused_by_name() -> None:
    with pytest.raises(ValidationError, match="vtt"):
        TranscriptionRequest(model="m", response_format="vtt")
    assert error_field(TranscriptionRequest, model="m", response_format="srt") == "response_format"


def test_timestamp_granularities_need_verbose_json() -> None:
    assert (
        error_field(TranscriptionRequest, model="m", timestamp_granularities=["word"])
        == "timestamp_granularities"
    )
    ok = TranscriptionRequest(model="m", response_format="verbose_json", timestamp_granularities=["word"])
    assert ok.words


def test_temperature_is_between_0_and_1_and_language_is_normalised() -> None:
    assert error_field(TranscriptionRequest, model="m", temperature=1.5) == "temperature"
    assert TranscriptionRequest(model="m", language=" EN ").language == "en"
    assert TranscriptionRequest(model="m", language="").language is None


def test_speech_checks_sample_rate_speed_and_blank_input() -> None:
    assert error_field(SpeechRequest, model="m", voice="v", input="hi", sample_rate=11025) == "sample_rate"
    assert error_field(SpeechRequest, model="m", voice="v", input="hi", speed=9) == "speed"
    assert error_field(SpeechRequest, model="m", voice="v", input="   ") == "input"
    assert SpeechRequest(model="m", voice="v", input="hi").response_format == "wav"


def test_speech_speed_is_the_api_references_half_to_five() -> None:
    for speed in (0.25, 0.49, 5.01):
        assert error_field(SpeechRequest, model="m", voice="v", input="hi", speed=speed) == "speed"
    for speed in (0.5, 1.0, 4.5, 5.0):
        assert SpeechRequest(model="m", voice="v", input="hi", speed=speed).speed == speed
    assert SpeechRequest(model="m", voice="v", input="hi").speed == 1.0


def test_audio_duration_limit_defaults_to_two_hours_and_must_be_positive() -> None:
    assert Settings().max_audio_seconds == 7200
    assert Settings(max_audio_seconds=60).max_audio_seconds == 60
    with pytest.raises(ValidationError):
        Settings(max_audio_seconds=0)


def test_billing_rounds_up_to_whole_seconds_with_a_10_second_minimum() -> None:
    assert billed_seconds(0.5) == 10.0
    assert billed_seconds(10.2) == 11.0
    assert billed_seconds(61.0) == 61.0


def test_the_audio_upload_limit_can_be_raised_to_100_mb_and_no_further() -> None:
    assert Settings().max_audio_bytes == 25 * 1024 * 1024
    assert Settings(max_audio_bytes=100 * 1024 * 1024).max_audio_bytes == 100 * 1024 * 1024
    with pytest.raises(ValidationError):
        Settings(max_audio_bytes=100 * 1024 * 1024 + 1)
