"""JSON and SSE framing in one place (orjson: the hot path serialises every chunk)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

SSE_DONE = b"data: [DONE]\n\n"


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, headers=headers, media_type="application/json")


def sse_event(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"
