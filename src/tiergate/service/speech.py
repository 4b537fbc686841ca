"""The speech road: resolve the model and voice, admit, then stream encoded audio as Piper speaks.

Admission is decided before the first byte (404, 400, 429, 498 are real statuses). Speech models
are limited by requests and by input characters, counted as tokens (TPM/TPD), since GroqCloud
limits its TTS models in tokens and a character is what the client controls. The slot is held
until the last byte is sent, and freed exactly once, also when the client leaves early.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import anyio

from tiergate import ids
from tiergate.audio.encode import SpeechEncoder
from tiergate.auth import Principal
from tiergate.engines.audio_models import PIPER
from tiergate.engines.piper import PiperEngine, SpeechEngineError
from tiergate.errors import APIError, EngineFailure, InvalidRequest, ServiceUnavailable
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
    encoder: SpeechEncoder
    request_id: str = field(default_factory=ids.request_id)
    samples: int = 0
    _finished: bool = False

    @property
    def media_type(self) -> str:
        return self.encoder.media_type

    @property
    def headers(self) -> dict[str, str]:
        return {**self.admitted.headers, "x-request-id": self.request_id}

    async def audio(self) -> AsyncIterator[bytes]:
        """Encoded bytes as each sentence is synthesized; the slot is freed when this ends."""
        try:
            pcm = await self.engine.synthesize(self.request.input, self.voice, self.request.speed)
            try:
                async for chunk in pcm:
                    self.samples += len(chunk) // 2
                    if data := self.encoder.feed(chunk):
                        yield data
            finally:
                with anyio.CancelScope(shield=True):
                    await pcm.aclose()
            if data := self.encoder.finish():
                yield data
        except SpeechEngineError as exc:
            raise EngineFailure("The speech engine failed; please retry.") from exc
        finally:
            with anyio.CancelScope(shield=True):
                await self.finish()

    async def finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        await self.runtime.admission.finish(self.who, self.admitted, len(self.request.input))


def speech_engine(runtime: Runtime, name: str) -> tuple[str, PiperEngine]:
    spec = runtime.registry.resolve(name)
    if spec.engine != PIPER:
        raise InvalidRequest(
            f"The model `{spec.id}` does not support speech.", param="model", code="model_not_supported"
        )
    engine = runtime.audio_engines.get(spec.id)
    if not isinstance(engine, PiperEngine):
        raise ServiceUnavailable(f"The model `{spec.id}` is not loaded on this server.")
    return spec.id, engine


async def start_speech(runtime: Runtime, principal: Principal, request: SpeechRequest) -> SpeechRun:
    model, engine = speech_engine(runtime, request.model)
    who = Who(principal.org_id, principal.org_name, principal.project_id, model)
    try:
        voice = engine.voice(request.voice)
        if voice is None:
            raise InvalidRequest(
                f"The voice `{request.voice}` is not available for model `{model}`. "
                f"Valid voices: {', '.join(engine.voices)}.",
                param="voice",
                code="invalid_value",
            )
        encoder = SpeechEncoder(request.response_format, engine.sample_rate(voice), request.sample_rate)
        tiers = candidate_tiers("on_demand", performance_entitled=False)
        admitted = await runtime.admission.admit(who, tiers, Cost(requests=1, tokens=len(request.input)))
    except APIError as error:
        error.headers = {**await runtime.admission.headers(who, "on_demand"), **error.headers}
        raise
    return SpeechRun(runtime, who, engine, request, voice, admitted, encoder)
