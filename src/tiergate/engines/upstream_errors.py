"""What an upstream's answer means for the client: a chat body or garbage, an error to pass through, or a
failure that lets the next upstream try. Pure functions over status, headers and bytes.

An upstream's 4xx keeps its status and message (400/422 -> 400, 429 with its retry-after, 498), except
401/403/404: those mean the gateway itself is misconfigured (its key, the upstream model name), so the
client gets 502 rather than being told its own key is wrong. Any 5xx lets the next upstream try.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import orjson

from tiergate.errors import (
    APIError,
    BadGateway,
    FlexCapacityExceeded,
    InvalidRequest,
    RateLimited,
    UpstreamRejected,
)

MISCONFIGURED = (401, 403, 404)
MAX_ERROR_BODY = 64 * 1024
# An upstream's retry-after is passed on, capped at a day: a client should not be told to wait longer.
_MAX_RETRY_AFTER = 86400.0


class Retry(Exception):
    """This upstream failed before the first byte; the next one may be tried."""

    def __init__(self, error: APIError) -> None:
        super().__init__(error.message)
        self.error = error


def status_error(model: str, status: int, headers: Mapping[str, str], raw: bytes) -> Exception:
    """The exception for a non-2xx answer: a Retry (5xx) or the APIError the client gets (4xx)."""
    if status >= 500:
        return Retry(BadGateway(f"The upstream for `{model}` failed with status {status}."))
    if status in MISCONFIGURED:
        return BadGateway(f"The upstream for `{model}` refused the gateway ({status}).")
    message, err_type, code, param = error_fields(raw)
    message = message or f"The upstream rejected the request with status {status}."
    if status == 429:
        return RateLimited(
            message, retry_after=_seconds(headers.get("retry-after")), kind=err_type or "tokens"
        )
    if status == 498:
        return FlexCapacityExceeded(message)
    if status in (400, 422):
        return InvalidRequest(message, param=param, code=code or "invalid_request_error")
    return UpstreamRejected(status, message, param=param, code=code)


def chat_body(raw: bytes) -> dict[str, Any] | None:
    """The parsed body if it looks like a chat completion (a choices list of messages), else None."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict):
        return None
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    if not isinstance(choices[0].get("message"), dict):
        return None
    return body


def error_fields(raw: bytes) -> tuple[str | None, str | None, str | None, str | None]:
    """(message, type, code, param) from an OpenAI-style error body, each None when absent or odd."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, None, None, None
    return _fields(body)


def _fields(body: Any) -> tuple[str | None, str | None, str | None, str | None]:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str):
        return error, None, None, None
    if not isinstance(error, dict):
        detail = body.get("detail") if isinstance(body, dict) else None  # FastAPI-style servers
        return (detail if isinstance(detail, str) else None), None, None, None

    def text(key: str) -> str | None:
        value = error.get(key)
        return value if isinstance(value, str) and value else None

    return text("message"), text("type"), text("code"), text("param")


def stream_error(error: Any) -> APIError:
    """An error event inside the upstream's stream, re-issued with its message, type and code."""
    # Read as it was parsed: dumping it again for error_fields would fail past orjson's write depth.
    message, err_type, code, param = _fields({"error": error})
    failure = UpstreamRejected(502, message or "The upstream failed mid-stream.", param=param, code=code)
    failure.type = err_type or "bad_gateway"
    if code is None:
        failure.code = "bad_gateway"
    return failure


def _seconds(value: str | None) -> float:
    """A retry-after in seconds; 1 when absent or not a sane number ("inf" and "nan" parse as floats)."""
    try:
        seconds = float(value) if value is not None else 1.0
    except ValueError:
        return 1.0
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER) if math.isfinite(seconds) else 1.0
