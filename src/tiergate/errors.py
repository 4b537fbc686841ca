"""One exception type per error kind; one handler (api/errors.py) renders GroqCloud's envelope.

Hierarchy (status, type, code):
    APIError                      base: never raised directly
      InvalidRequest              400 invalid_request_error (code varies: invalid_value, unsupported ...)
      AuthenticationFailed        401 invalid_request_error / invalid_api_key
      PermissionDenied            403 permission_error / permission_denied
      NotFound                    404 invalid_request_error / not_found (model_not_found for models)
      PayloadTooLarge             413 invalid_request_error / request_too_large
      RateLimited                 429 tokens / requests, code rate_limit_exceeded, carries retry_after
      FlexCapacityExceeded        498 capacity_exceeded
      EngineFailure               500 internal_server_error (message is ours, never str(exc))
      BadGateway                  502 bad_gateway (an upstream answered garbage or failed)
      ServiceUnavailable          503 service_unavailable
      GatewayTimeout              504 gateway_timeout (an upstream did not answer in time)
      UpstreamRejected            the upstream's own 4xx status, passed through in our envelope
"""

from __future__ import annotations

import logging
from typing import Any


class APIError(Exception):
    status: int = 500
    type: str = "internal_server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.param = param
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "message": self.message,
            "type": self.type,
            "code": self.code,
            "param": self.param,
        }
        error.update(self.extra)
        return {"error": error}


class InvalidRequest(APIError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request_error"


class AuthenticationFailed(APIError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class PermissionDenied(APIError):
    status = 403
    type = "permission_error"
    code = "permission_denied"


class NotFound(APIError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"

    def __init__(self, model: str, param: str | None = "model") -> None:
        super().__init__(f"The model `{model}` does not exist or you do not have access to it.", param=param)


class PayloadTooLarge(APIError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RateLimited(APIError):
    status = 429
    type = "tokens"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float, kind: str = "tokens", **kw: Any) -> None:
        super().__init__(message, **kw)
        self.type = kind
        self.retry_after = retry_after


class FlexCapacityExceeded(APIError):
    status = 498
    type = "capacity_exceeded"
    code = "capacity_exceeded"


class EngineFailure(APIError):
    status = 500
    type = "internal_server_error"
    code = "engine_error"


class ServiceUnavailable(APIError):
    status = 503
    type = "service_unavailable"
    code = "service_unavailable"


class BadGateway(APIError):
    status = 502
    type = "bad_gateway"
    code = "bad_gateway"


class GatewayTimeout(APIError):
    status = 504
    type = "gateway_timeout"
    code = "gateway_timeout"


class UpstreamRejected(APIError):
    """An upstream's 4xx, re-issued with its status and message in GroqCloud's envelope (never retried)."""

    type = "invalid_request_error"
    code = "invalid_request_error"

    def __init__(self, status: int, message: str, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.status = status


_TYPE_NAMES = {"str", "int", "float", "bool", "list", "dict", "none"}


def param_from_loc(loc: tuple[Any, ...]) -> str | None:
    """Pydantic's error location as the API's param path, e.g. ('messages', 0, 'role') -> messages[0].role.

    Union branches add type names to the location (`str`, `list[...]`, `function-after[...]`); those
    are not fields and are dropped.
    """
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        name = str(part)
        if name.lower() in _TYPE_NAMES or any(c in name for c in "[]()-,") or name in {"body"}:
            continue
        out += f".{name}" if out else name
    return out or None


def client_facing(exc: Exception, message: str, context: str) -> APIError:
    """`exc` as a client may see it: an APIError as it is; anything else is our bug, not the client's
    fault, so it is logged with its traceback (`context` says where) and becomes an EngineFailure
    with `message`, never str(exc)."""
    if isinstance(exc, APIError):
        return exc
    logging.getLogger("tiergate.errors").error("%s failed unexpectedly", context, exc_info=exc)
    return EngineFailure(message)
