"""Pure ASGI middleware: request size bound, path normalisation, and per-route metrics.

Pure ASGI (not BaseHTTPMiddleware) so streaming responses pass through unbuffered and cheaply.
"""

from __future__ import annotations

import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tiergate.api.errors import error_response
from tiergate.errors import PayloadTooLarge
from tiergate.observability.metrics import Metrics

_SLASHES = re.compile(r"/{2,}")


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"Request body too large: the limit is {limit} bytes.")


class BodyLimitMiddleware:
    """413 before reading a body whose declared length is over the limit; count bytes for the rest.

    `path_limits` gives single routes their own limit (file uploads take up to the file size limit).
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int, path_limits: dict[str, int] | None = None) -> None:
        self.app = app
        self.limit = max_body_bytes
        self.path_limits = path_limits or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "//" in scope["path"]:
            # GroqCloud's own examples use //openai/v1/...; treat it as one slash.
            scope = {**scope, "path": _SLASHES.sub("/", scope["path"])}
        limit = self.path_limits.get(scope["path"].rstrip("/"), self.limit)
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > limit:
                    response = error_response(_too_large(limit))
                    response.headers["connection"] = "close"
                    await response(scope, receive, send)
                    return
                break
        received = 0

        async def bounded_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _too_large(limit)
            return message

        await self.app(scope, bounded_receive, send)


class MetricsMiddleware:
    """Counts requests by route template and status, and times them to the last byte."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        state: dict[str, Any] = scope.setdefault("state", {})

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            final = state.get("status_override", status)
            self.metrics.requests.labels(label, str(final)).inc()
            self.metrics.latency.labels(label).observe(time.perf_counter() - start)
