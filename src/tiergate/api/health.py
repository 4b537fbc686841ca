"""GET /healthz (200 only once the models are loaded) and GET /metrics (Prometheus text)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from tiergate.api.framing import json_response

router = APIRouter()


@router.get("/healthz")
async def healthz(request: Request) -> Response:
    state = request.app.state
    if getattr(state, "ready", False):
        runtime = state.runtime
        return json_response({"status": "ok", "models": sorted([*runtime.engines, *runtime.audio_engines])})
    failure = getattr(state, "load_error", None)
    body = {"status": "failed" if failure else "loading"}
    if failure:
        body["error"] = failure
    return json_response(body, status=503)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    return Response(request.app.state.runtime.metrics.render(), media_type=CONTENT_TYPE_LATEST)
