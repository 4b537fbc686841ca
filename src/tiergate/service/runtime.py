"""The components one server is built from, made once in create_app and passed down (no globals)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy.orm import Session, sessionmaker

from tiergate.auth import Authenticator
from tiergate.clock import Clock
from tiergate.config import Settings
from tiergate.engines.audio_models import AudioEngine
from tiergate.engines.base import Engine, ModelSpec
from tiergate.engines.registry import ModelRegistry
from tiergate.errors import InvalidRequest, ServiceUnavailable
from tiergate.observability.metrics import Metrics
from tiergate.store.blobs import BlobStore
from tiergate.tiers.admission import Admission
from tiergate.tiers.scheduler import Scheduler
from tiergate.tiers.speed import ServiceSpeed

E = TypeVar("E")


@dataclass
class Runtime:
    settings: Settings
    clock: Clock
    registry: ModelRegistry
    engines: dict[str, Engine]
    schedulers: dict[str, Scheduler]
    admission: Admission
    authenticator: Authenticator
    metrics: Metrics
    # Files and batches: the SQL store and the file bytes; a nudge for the batch runner (new work).
    sessions: sessionmaker[Session]
    blobs: BlobStore
    wake_batches: Callable[[], None] = lambda: None
    # Per model: how fast requests are served, to predict when a busy slot frees (flex decisions).
    speeds: dict[str, ServiceSpeed] = field(default_factory=dict)
    # Speech-to-text and text-to-speech engines by model id (engines/audio_models.py); their slots
    # are in `schedulers` like the chat models'.
    audio_engines: dict[str, AudioEngine] = field(default_factory=dict)

    def speed(self, model: str) -> ServiceSpeed:
        return self.speeds.setdefault(model, ServiceSpeed())

    def audio_engine(self, name: str, kind: str, engine_type: type[E], does: str) -> tuple[ModelSpec, E]:
        """The loaded `kind` engine of model `name`: 400 when the model is not one (it cannot do
        `does`, e.g. "speech"), 503 when it is but is not loaded on this server."""
        spec = self.registry.resolve(name)
        if spec.engine != kind:
            raise InvalidRequest(
                f"The model `{spec.id}` does not support {does}.", param="model", code="model_not_supported"
            )
        engine = self.audio_engines.get(spec.id)
        if not isinstance(engine, engine_type):
            raise ServiceUnavailable(f"The model `{spec.id}` is not loaded on this server.")
        return spec, engine
