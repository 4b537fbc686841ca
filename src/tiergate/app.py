"""create_app(settings): builds every component once, wires the lifespan, mounts the routers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from tiergate.api import audio, batches, chat, files, health, models, responses
from tiergate.api.errors import install_error_handlers
from tiergate.api.middleware import BodyLimitMiddleware, MetricsMiddleware
from tiergate.auth import Authenticator
from tiergate.batches.runner import BatchRunner
from tiergate.clock import Clock, SystemClock
from tiergate.config import Settings
from tiergate.engines.audio_models import load_audio_engines
from tiergate.engines.piper import PiperEngine
from tiergate.engines.registry import ModelRegistry, build_engines
from tiergate.engines.upstream import UpstreamEngine
from tiergate.observability.metrics import Metrics
from tiergate.service.runtime import Runtime
from tiergate.store import open_store
from tiergate.store.blobs import FolderBlobStore
from tiergate.tiers.admission import Admission
from tiergate.tiers.defaults import LimitTable
from tiergate.tiers.limit_gate import RateLimitGate
from tiergate.tiers.limit_store import LimitStore, MemoryLimitStore
from tiergate.tiers.limits import RateLimiter
from tiergate.tiers.redis_store import RedisLimitStore
from tiergate.tiers.scheduler import Scheduler

log = logging.getLogger("tiergate")
API_PREFIXES = ("/openai/v1", "/v1")
# Multipart framing around an uploaded file; the files route itself enforces max_file_bytes.
_MULTIPART_SLACK = 1024 * 1024


def create_app(settings: Settings, clock: Clock | None = None) -> FastAPI:
    clock = clock or SystemClock()
    metrics = Metrics()
    store = open_store(settings.resolved_database_url)
    registry = ModelRegistry.from_settings(settings)
    schedulers: dict[str, Scheduler] = {}
    limit_store: LimitStore = (
        RedisLimitStore.from_url(settings.redis_url) if settings.redis_url else MemoryLimitStore()
    )
    limits = RateLimitGate(
        RateLimiter(limit_store, clock),
        LimitTable.from_config(settings.limits, registry.canonical),
        store.sessions,
        clock,
        settings.cache_ttl,
        registry.canonical,
    )
    blobs = FolderBlobStore(settings.data_dir / "files")
    runtime = Runtime(
        settings=settings,
        clock=clock,
        registry=registry,
        engines={},
        schedulers=schedulers,
        admission=Admission(schedulers, limits, metrics),
        authenticator=Authenticator(store.sessions, clock, settings.cache_ttl),
        metrics=metrics,
        sessions=store.sessions,
        blobs=blobs,
    )
    batch_runner = BatchRunner(runtime, store.sessions, blobs)
    runtime.wake_batches = batch_runner.wake

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loader = asyncio.create_task(_load_engines(app, runtime))
        batch_work = asyncio.create_task(_run_batches(loader, batch_runner))
        try:
            yield
        finally:
            loader.cancel()
            batch_work.cancel()
            await asyncio.gather(batch_work, return_exceptions=True)
            await batch_runner.stop()
            for engine in runtime.engines.values():
                await engine.close()
            for audio_engine in runtime.audio_engines.values():
                await audio_engine.close()
            store.close()

    app = FastAPI(title="tiergate", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.runtime = runtime
    app.state.ready = False
    install_error_handlers(app)
    for prefix in API_PREFIXES:
        app.include_router(chat.router, prefix=prefix)
        app.include_router(responses.router, prefix=prefix)
        app.include_router(models.router, prefix=prefix)
        app.include_router(files.router, prefix=prefix)
        app.include_router(batches.router, prefix=prefix)
        app.include_router(audio.router, prefix=prefix)
    app.include_router(health.router)
    upload_limit = max(settings.max_body_bytes, settings.max_file_bytes + _MULTIPART_SLACK)
    app.add_middleware(
        BodyLimitMiddleware,
        max_body_bytes=settings.max_body_bytes,
        path_limits={
            **{f"{prefix}/files": upload_limit for prefix in API_PREFIXES},
            **{
                f"{prefix}{route}": audio.url_field_limit(settings.max_audio_bytes) + _MULTIPART_SLACK
                for prefix in API_PREFIXES
                for route in audio.AUDIO_ROUTES
            },
        },
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


async def _load_engines(app: FastAPI, runtime: Runtime) -> None:
    """Load weights off the event loop; /healthz turns 200 once every model is ready."""
    settings = runtime.settings
    try:
        engines = await asyncio.to_thread(build_engines, settings, runtime.registry)
    except Exception as exc:
        log.exception("loading models failed")
        app.state.load_error = f"loading models failed: {type(exc).__name__}"
        return
    for model_id, engine in engines.items():
        runtime.schedulers[model_id] = _scheduler(runtime, engine.slots, settings.reserved_performance_slots)
        if isinstance(engine, UpstreamEngine):
            await engine.start(runtime.metrics)  # health checks and load polls need the running loop
    runtime.engines.update(engines)
    try:
        audio_engines = await asyncio.to_thread(load_audio_engines, settings, runtime.registry)
    except Exception as exc:
        log.exception("loading audio models failed")
        app.state.load_error = f"loading audio models failed: {type(exc).__name__}"
        return
    for model_id, audio_engine in audio_engines.items():
        runtime.schedulers[model_id] = _scheduler(runtime, audio_engine.slots, 0)
        if isinstance(audio_engine, PiperEngine):
            await audio_engine.start()  # a warm Piper process per voice, so speech starts at once
    runtime.audio_engines.update(audio_engines)
    # Everything built so far lives as long as the server. Freezing it keeps the collector from
    # walking those ~170k objects on every full collection: each walk stalled the event loop for
    # 50-120 ms, the whole p99 of a busy gateway (docs/benchmarks.md, gateway overhead).
    gc.collect()
    gc.freeze()
    app.state.ready = True
    log.info("models ready: %s", ", ".join(sorted([*engines, *audio_engines])))


def _scheduler(runtime: Runtime, slots: int, reserved_performance_slots: int) -> Scheduler:
    settings = runtime.settings
    return Scheduler(
        slots,
        clock=runtime.clock,
        flex_wait=settings.flex_wait_ms / 1000.0,
        reserved_performance_slots=reserved_performance_slots,
        fifo=settings.fifo,
    )


async def _run_batches(loader: asyncio.Task[None], runner: BatchRunner) -> None:
    """Batch lines need the engines: start the runner once loading is over (it idles if that failed)."""
    await asyncio.gather(loader, return_exceptions=True)
    await runner.run()
