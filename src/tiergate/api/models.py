"""GET /models and GET /models/{model}; ids may contain '/' (e.g. openai/gpt-oss-20b)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from tiergate.api.deps import principal_of, runtime_of
from tiergate.api.framing import json_response
from tiergate.engines.base import ModelSpec

router = APIRouter()


def model_object(spec: ModelSpec) -> dict[str, Any]:
    return {
        "id": spec.id,
        "object": "model",
        "created": spec.created,
        "owned_by": spec.owned_by,
        "active": True,
        "context_window": spec.context_window,
        "public_apps": None,
        "max_completion_tokens": spec.max_completion_tokens,
    }


@router.get("/models")
async def list_models(request: Request) -> Response:
    await principal_of(request)
    runtime = runtime_of(request)
    loaded = runtime.engines.keys() | runtime.audio_engines.keys()
    data = [model_object(spec) for spec in runtime.registry if spec.id in loaded]
    return json_response({"object": "list", "data": data})


@router.get("/models/{model:path}")
async def retrieve_model(model: str, request: Request) -> Response:
    await principal_of(request)
    runtime = runtime_of(request)
    return json_response(model_object(runtime.registry.resolve(model)))
