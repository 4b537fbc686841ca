"""Validate a batch input file line by line, before anything runs.

Two kinds of problems (GroqCloud / OpenAI behaviour):
  * whole-batch: a line without a usable `custom_id`, a duplicated `custom_id`, a line that is
    not a JSON object. The batch goes to `failed` and nothing runs.
  * per-line: wrong method, wrong or unsupported url, unknown model, invalid body. Only that line
    fails: it is counted as failed, gets an error-file line and an entry in `errors`.
Line numbers are physical and 1-based, blank lines skipped, as the upload check counts them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import ValidationError

from tiergate.batches import formats
from tiergate.errors import APIError
from tiergate.schemas.audio import TranscriptionRequest
from tiergate.schemas.chat import ChatCompletionRequest

CHAT_URL = "/v1/chat/completions"
AUDIO_URLS = ("/v1/audio/transcriptions", "/v1/audio/translations")
BATCH_URLS = (CHAT_URL, *AUDIO_URLS)
# `errors.data` on the batch object is for people; the error file holds every failed line.
MAX_LISTED_ERRORS = 1000


@dataclass(frozen=True, slots=True)
class LineError:
    code: str
    message: str
    param: str | None
    line: int

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "param": self.param, "line": self.line}


@dataclass(frozen=True, slots=True)
class ValidLine:
    """A line to store: pending with its request body, or already failed with its error-file line."""

    line: int
    custom_id: str
    request: str | None
    failed_result: str | None


@dataclass
class Validation:
    lines: list[ValidLine] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)
    fatal: bool = False

    @property
    def failed(self) -> int:
        return sum(1 for line in self.lines if line.failed_result is not None)

    def note(self, error: LineError) -> None:
        if len(self.errors) < MAX_LISTED_ERRORS:
            self.errors.append(error)


def _param(loc: tuple[Any, ...]) -> str:
    out = "body"
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not any(c in str(part) for c in "[]()-,"):
            out += f".{part}"
    return out


def _check_body(body: Any, model_exists: Callable[[str], bool], url: str) -> tuple[str, str, str] | None:
    """(code, message, param) of the first problem with a line's body, or None when it is valid."""
    if not isinstance(body, dict):
        return "invalid_body", "`body` must be a JSON object with the request parameters.", "body"
    request: ChatCompletionRequest | TranscriptionRequest
    try:
        if url in AUDIO_URLS:
            request = TranscriptionRequest.model_validate(body)
        else:
            request = ChatCompletionRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = _param(tuple(first.get("loc", ())))
        message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        return "invalid_request", f"`{param}`: {message}", param
    except APIError as exc:
        return exc.code or "invalid_request", exc.message, f"body.{exc.param}" if exc.param else "body"
    if isinstance(request, TranscriptionRequest) and not request.url:
        # GroqCloud: the file field is not supported in batch requests; `url` is required.
        return "missing_required_parameter", "`body.url` is required for audio batch lines.", "body.url"
    if isinstance(request, ChatCompletionRequest) and request.stream:
        return "invalid_value", "Streaming is not supported in batch requests.", "body.stream"
    if not model_exists(request.model):
        return (
            "model_not_found",
            f"The model `{request.model}` does not exist or you do not have access to it.",
            "body.model",
        )
    return None


def _line_problem(
    item: dict[str, Any], endpoint: str, model_exists: Callable[[str], bool]
) -> tuple[str, str, str] | None:
    method = item.get("method")
    if method != "POST":
        return "invalid_method", f"Invalid value: {method!r}. Supported values are: 'POST'", "method"
    url = item.get("url")
    if url not in BATCH_URLS:
        allowed = ", ".join(repr(u) for u in BATCH_URLS)
        return "invalid_url", f"Invalid value: {url!r}. Supported values are: {allowed}", "url"
    if url != endpoint:
        return (
            "invalid_url",
            f"The line's url {url!r} does not match the batch's endpoint {endpoint!r}.",
            "url",
        )
    return _check_body(item.get("body"), model_exists, url)


def validate_lines(
    raw_lines: Iterable[bytes], endpoint: str, model_exists: Callable[[str], bool]
) -> Validation:
    result = Validation()
    seen: dict[str, int] = {}
    for number, raw in enumerate(raw_lines, start=1):
        if not raw.strip():
            continue
        try:
            item = orjson.loads(raw)
        except orjson.JSONDecodeError:
            item = None
        if not isinstance(item, dict):
            result.fatal = True
            result.note(LineError("invalid_json", "Each line must be one JSON object.", None, number))
            continue
        custom_id = item.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            result.fatal = True
            result.note(
                LineError(
                    "missing_custom_id",
                    "Each line needs a non-empty string `custom_id`.",
                    "custom_id",
                    number,
                )
            )
            continue
        if custom_id in seen:
            result.fatal = True
            result.note(
                LineError(
                    "duplicate_custom_id",
                    f"The custom_id {custom_id!r} is also used on line {seen[custom_id]}; "
                    "custom_id values must be unique within a batch.",
                    "custom_id",
                    number,
                )
            )
            continue
        seen[custom_id] = number
        problem = _line_problem(item, endpoint, model_exists)
        if problem is None:
            result.lines.append(ValidLine(number, custom_id, orjson.dumps(item["body"]).decode(), None))
            continue
        code, message, param = problem
        result.note(LineError(code, message, param, number))
        failed = formats.error_line(custom_id, code, message, param=param, line=number)
        result.lines.append(ValidLine(number, custom_id, None, failed))
    if not seen and not result.fatal:
        result.fatal = True
        result.note(LineError("empty_file", "The input file has no requests.", None, 0))
    return result
