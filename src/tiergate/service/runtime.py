"""The components one server is built from, made once in create_app and passed down (no globals)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from tiergate.auth import Authenticator
from tiergate.clock import Clock
from tiergate.config import Settings
from tiergate.engines.audio_models import AudioEngine
from tiergate.engines.base import Engine
from tiergate.engines.registry import ModelRegistry
from tiergate.observability.metrics import Metrics
from tiergate.store.blobs import BlobStore
from tiergate.tiers.admission import Admission
from tiergate.tiers.scheduler import Scheduler
from tiergate.tiers.speed import ServiceSpeed


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
