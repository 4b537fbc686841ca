"""Audio request bodies: transcriptions and translations (multipart fields, or a batch line's JSON
body) and speech (JSON), shaped like the groq SDK's `*CreateParams`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

# GroqCloud: "The prompt ... is limited to 224 tokens"; counted with the model's own tokenizer.
MAX_PROMPT_TOKENS = 224
# A generous bound on speech input; each request is synthesized whole by one process.
MAX_SPEECH_INPUT = 10_000
SPEECH_SAMPLE_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)


class TranscriptionRequest(BaseModel):
    """`/audio/transcriptions` and `/audio/translations`; the audio itself is `file` or `url`."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    # An http(s) address or a data URL (base64 or base64url); the only way to give audio in a batch.
    url: str | None = None
    # ISO-639-1; transcriptions only (translations always produce English).
    language: str | None = None
    prompt: str | None = None
    response_format: str = "json"
    temperature: float = Field(default=0.0, ge=0.0, le=1.0)
    timestamp_granularities: list[Literal["word", "segment"]] | None = None

    @field_validator("response_format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value in ("vtt", "srt"):
            raise ValueError(f"response_format `{value}` is not supported; use json, text or verbose_json")
        if value not in ("json", "text", "verbose_json"):
            raise ValueError("must be one of json, text, verbose_json")
        return value

    @field_validator("language")
    @classmethod
    def _iso_639_1(cls, value: str | None) -> str | None:
        return None if value in (None, "") else value.strip().lower()

    @field_validator("timestamp_granularities")
    @classmethod
    def _granularities_need_verbose_json(
        cls, value: list[str] | None, info: ValidationInfo
    ) -> list[str] | None:
        # A field validator (not a model one) so the 400 names `timestamp_granularities` as its param.
        if value and info.data.get("response_format", "json") != "verbose_json":
            raise ValueError("timestamp_granularities requires response_format `verbose_json`")
        return value

    @property
    def words(self) -> bool:
        return "word" in (self.timestamp_granularities or ())


class SpeechRequest(BaseModel):
    """`/audio/speech`: text in, audio bytes out."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    input: str = Field(min_length=1, max_length=MAX_SPEECH_INPUT)
    voice: str = Field(min_length=1)
    response_format: Literal["wav", "mp3", "flac", "ogg", "mulaw"] = "wav"
    # Hz; None keeps the voice's own rate.
    sample_rate: int | None = None
    # The API reference's range; Piper's length scale is 1/speed.
    speed: float = Field(default=1.0, ge=0.5, le=5.0)

    @field_validator("sample_rate")
    @classmethod
    def _supported_rate(cls, value: int | None) -> int | None:
        if value is not None and value not in SPEECH_SAMPLE_RATES:
            raise ValueError(f"must be one of {', '.join(map(str, SPEECH_SAMPLE_RATES))}")
        return value

    @field_validator("input")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must contain text to speak")
        return value
