"""GET /healthz: 503 while the models load or after loading failed, 200 with every model once ready."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.scripted_engine import ScriptedEngine
from tiergate.app import create_app
from tiergate.config import Settings


async def _health(app: object) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.get("/healthz")


async def test_healthz_is_503_until_the_models_are_loaded_then_200_listing_them(tmp_path: Path) -> None:
    # ASGITransport runs no lifespan, so nothing loads by itself: each state is set as the loader would.
    settings = Settings(data_dir=tmp_path, models=[{"id": "m", "engine": "scripted", "context_window": 64}])
    app = create_app(settings)
    loading = await _health(app)
    assert loading.status_code == 503 and loading.json() == {"status": "loading"}

    app.state.load_error = "loading models failed: WeightsError"
    failed = await _health(app)
    assert failed.status_code == 503
    assert failed.json() == {"status": "failed", "error": "loading models failed: WeightsError"}

    runtime = app.state.runtime
    runtime.engines["m"] = ScriptedEngine(runtime.registry.resolve("m"), ["hi"])
    app.state.ready = True
    ready = await _health(app)
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "models": ["m"]}
