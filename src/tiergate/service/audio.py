"""The transcription and translation road: resolve, check, decode, admit by audio seconds, transcribe.

The same admission as chat (tiers/admission.py): candidate tiers, rate limits, a slot on the
model's scheduler, headers. Audio is limited by requests (RPM/RPD) and by audio seconds (ASH/ASD);
a request reserves its billed seconds (its duration, at least 10 s as GroqCloud bills) once the
audio is decoded, so every 400 about the audio itself comes before anything is reserved. The HTTP
router and the batch runner both call `transcribe`.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import IO, Any

import anyio

from tiergate import ids
from tiergate.audio.decode import AudioDecodeError, AudioTooLong, DecodedAudio, decode_audio
from tiergate.audio.fetch import FetchError, FetchTooLarge, fetch_url
from tiergate.audio.languages import language_name
from tiergate.auth import Principal
from tiergate.engines.audio_models import WHISPER
from tiergate.engines.base import ModelSpec
from tiergate.engines.whisper import LANGUAGE_CODES, TranscribeOptions, Transcript, WhisperEngine
from tiergate.errors import EngineFailure, InvalidRequest, PayloadTooLarge
from tiergate.schemas.audio import MAX_PROMPT_TOKENS, TranscriptionRequest
from tiergate.service.runtime import Runtime
from tiergate.tiers.admission import Who
from tiergate.tiers.limits import Cost
from tiergate.tiers.policy import candidate_tiers

# GroqCloud: "There is a minimum billed length of 10 seconds"; shorter than 0.01 s is refused.
MIN_BILLED_SECONDS = 10.0
MIN_AUDIO_SECONDS = 0.01
TASKS = {"transcribe": "transcriptions", "translate": "translations"}


@dataclass
class TranscriptionResult:
    request_id: str
    model: str
    task: str
    transcript: Transcript
    billed_seconds: float
    tier: str
    headers: dict[str, str]

    def body(self, response_format: str, *, words: bool) -> dict[str, Any]:
        """The json / verbose_json body (text is rendered by the router from `transcript.text`)."""
        transcript = self.transcript
        usage = {"type": "duration", "seconds": self.billed_seconds}
        if response_format != "verbose_json":
            return {"text": transcript.text, "usage": usage, "x_groq": {"id": self.request_id}}
        body: dict[str, Any] = {
            "task": self.task,
            "language": language_name(transcript.language),
            "duration": round(transcript.duration, 3),
            "text": transcript.text,
            "segments": transcript.segments,
        }
        if words:
            body["words"] = transcript.words
        body["usage"] = usage
        body["x_groq"] = {"id": self.request_id}
        return body


def billed_seconds(duration: float) -> float:
    """What a request counts against ASH/ASD and in usage: whole seconds, 10 at least."""
    return max(MIN_BILLED_SECONDS, float(math.ceil(duration)))


def whisper_model(runtime: Runtime, name: str, task: str) -> tuple[ModelSpec, WhisperEngine]:
    """The loaded whisper engine for `name`; 400 when the model cannot do `task`."""
    spec, engine = runtime.audio_engine(name, WHISPER, WhisperEngine, TASKS[task])
    if task == "translate" and not engine.multilingual:
        raise InvalidRequest(
            f"The model `{spec.id}` is English-only and does not support translations; "
            "use a multilingual model.",
            param="model",
            code="model_not_supported",
        )
    return spec, engine


async def check_request(engine: WhisperEngine, request: TranscriptionRequest, task: str) -> str | None:
    """The language to decode with (None: detect), after the checks GroqCloud makes on the fields."""
    language = request.language if task == "transcribe" else None
    if language is not None:
        if language not in LANGUAGE_CODES:
            raise InvalidRequest(
                f"`language`: {language!r} is not a supported ISO-639-1 language code.",
                param="language",
                code="invalid_value",
            )
        if not engine.multilingual and language != "en":
            raise InvalidRequest(
                f"The model `{engine.spec.id}` is English-only; `language` must be `en`, got `{language}`.",
                param="language",
                code="invalid_value",
            )
    if request.prompt:
        # In a worker thread: a form field can be megabytes long, and tokenizing it would stall the loop.
        tokens = await asyncio.to_thread(engine.count_tokens, request.prompt)
        if tokens > MAX_PROMPT_TOKENS:
            raise InvalidRequest(
                f"`prompt` is {tokens} tokens long; the limit is {MAX_PROMPT_TOKENS} tokens.",
                param="prompt",
                code="invalid_value",
            )
    return language


async def open_audio(runtime: Runtime, request: TranscriptionRequest, upload: IO[bytes] | None) -> IO[bytes]:
    """The audio to decode: the uploaded file, or what `url` points at (fetched with limits)."""
    if upload is not None and request.url:
        raise InvalidRequest("Provide either `file` or `url`, not both.", param="url")
    if upload is not None:
        return upload
    if not request.url:
        raise InvalidRequest(
            "Either `file` or `url` must be provided.", param="file", code="missing_required_parameter"
        )
    settings = runtime.settings
    try:
        return await fetch_url(request.url, settings.max_audio_bytes, settings.audio_url_timeout)
    except FetchTooLarge as exc:
        raise PayloadTooLarge(str(exc), param="url") from None
    except FetchError as exc:
        raise InvalidRequest(str(exc), param="url", code="invalid_url") from None


async def decode(source: IO[bytes], param: str, max_seconds: float) -> DecodedAudio:
    """Decode off the event loop; every way the audio can be unusable is a 400 naming the field."""
    try:
        audio = await asyncio.to_thread(decode_audio, source, max_seconds)
    except AudioTooLong as exc:
        raise InvalidRequest(str(exc), param=param, code="audio_too_long") from None
    except AudioDecodeError as exc:
        raise InvalidRequest(str(exc), param=param, code="invalid_audio") from None
    if audio.duration < MIN_AUDIO_SECONDS:
        raise InvalidRequest(
            f"The audio is {audio.duration:.3f} s long; it must be at least {MIN_AUDIO_SECONDS} s.",
            param=param,
            code="audio_too_short",
        )
    if audio.silent:
        raise InvalidRequest("The audio contains only silence.", param=param, code="invalid_audio")
    return audio


async def transcribe(
    runtime: Runtime,
    principal: Principal,
    request: TranscriptionRequest,
    upload: IO[bytes] | None,
    *,
    task: str,
    internal_tier: str | None = None,
) -> TranscriptionResult:
    """Run one transcription or translation end to end; APIErrors carry the rate-limit headers."""
    spec, engine = whisper_model(runtime, request.model, task)
    who = Who(principal.org_id, principal.org_name, principal.project_id, spec.id)
    async with runtime.admission.headers_on_error(who):
        return await _transcribe(runtime, request, upload, task, internal_tier, spec, engine, who)


async def _transcribe(
    runtime: Runtime,
    request: TranscriptionRequest,
    upload: IO[bytes] | None,
    task: str,
    internal_tier: str | None,
    spec: ModelSpec,
    engine: WhisperEngine,
    who: Who,
) -> TranscriptionResult:
    language = await check_request(engine, request, task)
    source = await open_audio(runtime, request, upload)
    try:
        param = "file" if upload is not None else "url"
        audio = await decode(source, param, runtime.settings.max_audio_seconds)
    finally:
        if source is not upload:
            source.close()
    billed = billed_seconds(audio.duration)
    tiers = (internal_tier,) if internal_tier else candidate_tiers("on_demand", performance_entitled=False)
    admitted = await runtime.admission.admit(who, tiers, Cost(requests=1, audio_seconds=billed))
    options = TranscribeOptions(
        task=task,
        language=language,
        prompt=request.prompt,
        temperature=request.temperature,
        word_timestamps=request.words,
    )
    try:
        transcript = await engine.transcribe(audio.samples, options)
    except Exception as exc:
        raise EngineFailure("The engine failed while transcribing; please retry.") from exc
    finally:
        with anyio.CancelScope(shield=True):
            await runtime.admission.finish(who, admitted, 0, audio_seconds=billed)
    headers = {**admitted.headers}
    request_id = ids.request_id()
    headers["x-request-id"] = request_id
    return TranscriptionResult(request_id, spec.id, task, transcript, billed, admitted.tier, headers)
