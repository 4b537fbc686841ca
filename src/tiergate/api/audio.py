"""POST /audio/transcriptions, /audio/translations (multipart) and /audio/speech (JSON -> audio bytes).

Uploads stay in the multipart parser's spooled file (memory up to 1 MB, disk beyond) and the decoder
reads that file directly, so an upload is never held twice in memory. The body size is bounded by
BodyLimitMiddleware before parsing (at `url_field_limit` plus framing, so a data URL of the largest
audio fits); the file part is checked against max_audio_bytes here.
"""

from __future__ import annotations

from typing import IO, Any

from fastapi import APIRouter, Request
from starlette.datastructures import FormData, UploadFile
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from tiergate.api.deps import json_body, parse_with_limits, principal_of, runtime_of
from tiergate.api.framing import json_response
from tiergate.auth import Principal
from tiergate.errors import InvalidRequest, PayloadTooLarge
from tiergate.schemas.audio import SpeechRequest, TranscriptionRequest
from tiergate.service.audio import transcribe
from tiergate.service.runtime import Runtime
from tiergate.service.speech import SpeechRun, start_speech

router = APIRouter()
AUDIO_ROUTES = ("/audio/transcriptions", "/audio/translations")
_GRANULARITIES = ("timestamp_granularities[]", "timestamp_granularities")
# An SDK call with `url` and no file may arrive url-encoded rather than as multipart.
_FORMS = ("multipart/form-data", "application/x-www-form-urlencoded")


@router.post("/audio/transcriptions")
async def create_transcription(request: Request) -> Response:
    return await _speech_to_text(request, "transcribe")


@router.post("/audio/translations")
async def create_translation(request: Request) -> Response:
    return await _speech_to_text(request, "translate")


def url_field_limit(max_audio_bytes: int) -> int:
    """The largest `url` field: a base64 data URL of `max_audio_bytes` of audio, with room for its
    `data:...;base64,` header and for url-encoding (a form turns `+` and `/`, 1 in 32 base64
    characters, into three bytes each). The request body limit of the audio routes is built on it."""
    base64_length = 4 * -(-max_audio_bytes // 3)
    return base64_length + base64_length // 8 + 64 * 1024


@router.post("/audio/speech")
async def create_speech(request: Request) -> Response:
    principal = await principal_of(request)
    runtime = runtime_of(request)
    body = await json_body(request)
    speech = await parse_with_limits(SpeechRequest, body, runtime, principal)
    run = await start_speech(runtime, principal, speech)
    request.state.response_headers = run.headers
    return _SpeechResponse(run)


class _SpeechResponse(StreamingResponse):
    """Streams a started speech run and frees it however the response ends.

    Piper is already running when this is built, so a client that leaves before the body starts
    (when Starlette never iterates it, nor runs a background task) must still stop Piper and free
    the slot: `finish()` is idempotent, and normally the body's own `finally` has done it.
    """

    def __init__(self, run: SpeechRun) -> None:
        super().__init__(run.audio(), media_type=run.media_type, headers=run.headers)
        self._run = run

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._run.finish()


async def _speech_to_text(request: Request, task: str) -> Response:
    principal = await principal_of(request)
    runtime = runtime_of(request)
    if request.headers.get("content-type", "").startswith("application/json"):
        # A JSON body can only give audio by `url`, as a batch line does.
        body = await json_body(request)
        return await _run(request, runtime, principal, body, None, task)
    if not request.headers.get("content-type", "").startswith(_FORMS):
        raise InvalidRequest("Send audio as multipart/form-data with a `file` or `url` field.")
    # Starlette's 1 MB default for a text part would refuse a data URL of more than ~750 kB of audio.
    max_part_size = url_field_limit(runtime.settings.max_audio_bytes)
    async with request.form(max_files=1, max_fields=32, max_part_size=max_part_size) as form:
        upload = form.get("file")
        if upload is not None and not isinstance(upload, UploadFile):
            raise InvalidRequest("`file` must be an uploaded file.", param="file")
        if upload is not None and (upload.size or 0) > runtime.settings.max_audio_bytes:
            raise PayloadTooLarge(
                f"The audio file is larger than the limit of {runtime.settings.max_audio_bytes} bytes.",
                param="file",
            )
        # Inside the form's context: the spooled upload is deleted when it closes.
        return await _run(request, runtime, principal, _fields(form), upload.file if upload else None, task)


def _fields(form: FormData) -> dict[str, Any]:
    fields: dict[str, Any] = {
        key: value
        for key, value in form.multi_items()
        if isinstance(value, str) and key not in _GRANULARITIES
    }
    granularities = [v for key in _GRANULARITIES for v in form.getlist(key) if isinstance(v, str)]
    if granularities:
        fields["timestamp_granularities"] = granularities
    return fields


async def _run(
    request: Request,
    runtime: Runtime,
    principal: Principal,
    body: dict[str, Any],
    upload: IO[bytes] | None,
    task: str,
) -> Response:
    parsed = await parse_with_limits(TranscriptionRequest, body, runtime, principal)
    result = await transcribe(runtime, principal, parsed, upload, task=task)
    request.state.response_headers = result.headers
    if parsed.response_format == "text":
        return PlainTextResponse(result.transcript.text, headers=result.headers)
    return json_response(result.body(parsed.response_format, words=parsed.words), headers=result.headers)
