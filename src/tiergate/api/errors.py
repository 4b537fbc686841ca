"""The one error layer: every failure becomes GroqCloud's envelope {"error": {message, type, code, param}}."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from tiergate import ids
from tiergate.api.framing import json_response
from tiergate.errors import APIError, InvalidRequest, param_from_loc
from tiergate.tiers.headers import retry_after_header

log = logging.getLogger("tiergate.errors")


def validation_error(exc: ValidationError | RequestValidationError) -> InvalidRequest:
    first = exc.errors()[0]
    param = param_from_loc(tuple(first.get("loc", ())))
    msg = str(first.get("msg", "invalid value"))
    msg = msg.removeprefix("Value error, ")
    message = f"`{param}`: {msg}" if param else msg
    code = "missing_required_parameter" if first.get("type") == "missing" else "invalid_value"
    return InvalidRequest(message, param=param, code=code)


def error_response(error: APIError) -> Response:
    """The envelope, with the error's headers; every response, refused ones too, has an x-request-id
    (a fresh one: a request refused before it ran has no x_groq.id to match)."""
    headers = {"x-request-id": ids.request_id(), **error.headers}
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        headers["retry-after"] = retry_after_header(retry_after)
    return json_response(error.body(), status=error.status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(request: Request, exc: APIError) -> Response:
        extra = getattr(request.state, "response_headers", None)
        if extra:
            exc.headers = {**extra, **exc.headers}
        return error_response(exc)

    async def on_validation(request: Request, exc: RequestValidationError) -> Response:
        return await on_api_error(request, validation_error(exc))

    async def on_http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            error: APIError = APIError(f"Unknown request URL: {request.method} {request.url.path}.")
            error.status, error.type, error.code = 404, "invalid_request_error", "unknown_url"
        elif exc.status_code == 405:
            error = APIError(f"Method {request.method} is not allowed for {request.url.path}.")
            error.status, error.type, error.code = 405, "invalid_request_error", "method_not_allowed"
        else:
            error = APIError(str(exc.detail))
            error.status, error.type = exc.status_code, "invalid_request_error"
        return error_response(error)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        # Never leak str(exc) or a traceback to the client; the log has the details.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        error = APIError("The server had an error while processing your request. Please retry.")
        return error_response(error)

    app.add_exception_handler(APIError, on_api_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, on_validation)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, on_http)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, on_unexpected)
