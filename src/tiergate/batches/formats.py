"""Batch formats: completion windows, list cursors, and the output / error file lines.

Output line (GroqCloud's example, OpenAI's layout):
    {"id": "batch_req_…", "custom_id": "…", "response": {"status_code": 200, "request_id": "req_…",
     "body": {chat.completion}}, "error": null}
Error line: the same shape; `response` holds the HTTP error when the request ran and failed, or is
null when the line never ran (invalid line, batch expired); `error` says why in {code, message}.
"""

from __future__ import annotations

import base64
import re
from typing import Any

import orjson

from tiergate import ids

MIN_WINDOW_SECONDS = 24 * 3600
MAX_WINDOW_SECONDS = 7 * 24 * 3600
_WINDOW = re.compile(r"^\s*(\d+)\s*([hd])\s*$")
CURSOR_PREFIX = "cursor_"


def window_seconds(window: str) -> int | None:
    """Seconds in a completion window ("24h" .. "7d"), or None when it is not one we accept."""
    match = _WINDOW.match(window)
    if match is None:
        return None
    seconds = int(match.group(1)) * (3600 if match.group(2) == "h" else 86400)
    if not MIN_WINDOW_SECONDS <= seconds <= MAX_WINDOW_SECONDS:
        return None
    return seconds


def encode_cursor(batch_id: str) -> str:
    """GroqCloud's cursor: "cursor_" + unpadded base64url of {"id": "<batch id>"}."""
    raw = base64.urlsafe_b64encode(orjson.dumps({"id": batch_id})).rstrip(b"=")
    return CURSOR_PREFIX + raw.decode()


def decode_cursor(cursor: str) -> str | None:
    if not cursor.startswith(CURSOR_PREFIX):
        return None
    raw = cursor[len(CURSOR_PREFIX) :]
    try:
        value = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return None
    batch_id = value.get("id") if isinstance(value, dict) else None
    return batch_id if isinstance(batch_id, str) else None


def output_line(custom_id: str, request_id: str, body: dict[str, Any]) -> str:
    return _dumps(
        {
            "id": ids.batch_request_id(),
            "custom_id": custom_id,
            "response": {"status_code": 200, "request_id": request_id, "body": body},
            "error": None,
        }
    )


def failed_response_line(
    custom_id: str, request_id: str, status: int, body: dict[str, Any], code: str | None, message: str
) -> str:
    """A line that ran and got an error response (e.g. 400 context length)."""
    return _dumps(
        {
            "id": ids.batch_request_id(),
            "custom_id": custom_id,
            "response": {"status_code": status, "request_id": request_id, "body": body},
            "error": {"code": code, "message": message},
        }
    )


def error_line(
    custom_id: str, code: str, message: str, *, param: str | None = None, line: int | None = None
) -> str:
    """A line that never ran: invalid in the input file, or left when the batch expired."""
    error: dict[str, Any] = {"code": code, "message": message}
    if param is not None:
        error["param"] = param
    if line is not None:
        error["line"] = line
    return _dumps({"id": ids.batch_request_id(), "custom_id": custom_id, "response": None, "error": error})


def _dumps(value: dict[str, Any]) -> str:
    return orjson.dumps(value).decode()
