"""The speech road: resolve the model and voice, admit, start Piper, then stream audio as it speaks.

Admission and Piper's start are decided before the first byte (404, 400, 429, 498, and 500 for a
Piper that cannot start, are real statuses). Speech models are limited by requests and by input
characters, counted as tokens (TPM/TPD), since GroqCloud limits its TTS models in tokens and a
character is what the client controls. The slot is held until the last byte is sent, and freed
exactly once, also when the client leaves early.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field

import anyio

from tiergate import ids
from tiergate.audio.encode import FORMATS, SpeechEncoder
from tiergate.auth import Principal
from tiergate.engines.audio_models import PIPER
from tiergate.engines.piper import PiperEngine, SpeechEngineError
from tiergate.errors import EngineFailure, InvalidRequest
from tiergate.schemas.audio import SpeechRequest
from tiergate.service.runtime import Runtime
from tiergate.tiers.admission import Admitted, Who
from tiergate.tiers.limits import Cost
from tiergate.tiers.policy import candidate_tiers


@dataclass
class SpeechRun:
    runtime: Runtime
    who: Who
    engine: PiperEngine
    request: SpeechRequest
    voice: str
    admitted: Admitted
    request_id: str = field(default_factory=ids.request_id)
    encoder: SpeechEncoder | None = None
    _pcm: AsyncGenerator[bytes, None] | None = None
    _first: bytes = b""
    _finished: bool = False

    @property
    def media_type(self) -> str:
        return FORMATS[self.request.response_format].media_type

    @property
    def headers(self) -> dict[str, str]:
        return {**self.admitted.headers, "x-request-id": self.request_id}

    async def begin(self) -> None:
        """Start Piper and wait for its first audio, before any byte of the response is sent.

        A Piper that cannot start, or exits before speaking, is then a clean 500 with a JSON body
        instead of a 200 whose audio stops short; the slot is freed either way.
        """
        try:
            self.encoder = SpeechEncoder(
                self.request.response_format, self.engine.sample_rate(self.voice), self.request.sample_rate
            )
            self._pcm = await self.engine.synthesize(
                self.request.input,
                self.voice,
                self.request.speed,
                stall_seconds=self.runtime.settings.speech_stall_seconds,
            )
            self._first = await anext(self._pcm, b"")
        except SpeechEngineError as exc:
            await self.finish()
            raise EngineFailure("The speech engine failed to start; please retry.") from exc
        except BaseException:
            await self.finish()
            raise

    async def audio(self) -> AsyncIterator[bytes]:
        """Encoded bytes as each sentence is synthesized; the slot is freed when this ends."""
        assert self.encoder is not None and self._pcm is not None, "begin() first"
        try:
            first, self._first = self._first, b""
            if data := self._encode(first):
                yield data
            async for chunk in self._pcm:
                if data := self._encode(chunk):
                    yield data
            if data := self.encoder.finish():
                yield data
        except SpeechEngineError as exc:
            # The 200 is out: the body ends without its last chunk, which tells the client it is cut.
            raise EngineFailure("The speech engine failed; please retry.") from exc
        finally:
            await self.finish()

    def _encode(self, pcm: bytes) -> bytes:
        assert self.encoder is not None
        return self.encoder.feed(pcm) if pcm else b""

    async def finish(self) -> None:
        """Stop Piper, drop the encoder and free the slot, exactly once (idempotent); shielded, so a
        cancelled caller (a client gone) still frees everything."""
        if self._finished:
            return
        self._finished = True
        with anyio.CancelScope(shield=True):
            await self._release()

    async def _release(self) -> None:
        try:
            if self._pcm is not None:
                await self._pcm.aclose()  # kills Piper if it is still speaking
        finally:
            if self.encoder is not None:
                self.encoder.close()
            await self.runtime.admission.finish(self.who, self.admitted, len(self.request.input))


async def start_speech(runtime: Runtime, principal: Principal, request: SpeechRequest) -> SpeechRun:
    """Admit the request and start Piper; every refusal or failure here is a real HTTP status."""
    spec, engine = runtime.audio_engine(request.model, PIPER, PiperEngine, "speech")
    model = spec.id
    who = Who(principal.org_id, principal.org_name, principal.project_id, model)
    async with runtime.admission.headers_on_error(who):
        voice = engine.voice(request.voice)
        if voice is None:
            raise InvalidRequest(
                f"The voice `{request.voice}` is not available for model `{model}`. "
                f"Valid voices: {', '.join(engine.voices)}.",
                param="voice",
                code="invalid_value",
            )
        tiers = candidate_tiers("on_demand", performance_entitled=False)
        admitted = await runtime.admission.admit(who, tiers, Cost(requests=1, tokens=len(request.input)))
        run = SpeechRun(runtime, who, engine, request, voice, admitted)
        await run.begin()
    return run
