"""Request-scoped pieces the routers share: the runtime, the caller's identity, and the JSON body."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from fastapi import Request
from pydantic import BaseModel, ValidationError

from tiergate.api.errors import validation_error
from tiergate.auth import Principal
from tiergate.errors import APIError, InvalidRequest
from tiergate.service.chat import limit_headers_for
from tiergate.service.runtime import Runtime

M = TypeVar("M", bound=BaseModel)


def runtime_of(request: Request) -> Runtime:
    return request.app.state.runtime


async def principal_of(request: Request) -> Principal:
    runtime = runtime_of(request)
    return await runtime.authenticator.authenticate(request.headers.get("authorization"))


async def json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        raise InvalidRequest("The request body is empty; a JSON object is required.", code="invalid_json")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest(
            "We could not parse the JSON body of your request. The body must be valid JSON.",
            code="invalid_json",
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    return body


def parse_as(model: type[M], body: dict[str, Any]) -> M:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise validation_error(exc) from None


async def parse_with_limits(
    model: type[M], body: dict[str, Any], runtime: Runtime, principal: Principal
) -> M:
    """`parse_as`, with the rate-limit headers of the body's model on the 400: every response carries
    them, invalid requests for a known model included."""
    try:
        return parse_as(model, body)
    except APIError as error:
        error.headers = {**await limit_headers_for(runtime, principal, body.get("model")), **error.headers}
        raise
