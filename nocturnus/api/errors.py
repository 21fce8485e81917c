"""The one place that turns exceptions into HTTP answers in the error envelope.

``{"code": ..., "message": ..., "details": ...}`` — never an HTML page, never a stack
trace. An exception we did not raise on purpose is logged and becomes a 500, which the
test suite treats as a bug.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from sanic import HTTPResponse, Request
from sanic.exceptions import SanicException

from nocturnus.errors import NocturnusError, RateLimited, WriteContention

log = logging.getLogger("nocturnus.api")

_SANIC_CODES = {
    400: "VALIDATION_ERROR",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    408: "VALIDATION_ERROR",
    413: "PAYLOAD_TOO_LARGE",
    416: "VALIDATION_ERROR",
    429: "RATE_LIMITED",
    503: "UNAVAILABLE",
}


def envelope(
    status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> HTTPResponse:
    body = orjson.dumps({"code": code, "message": message, "details": details})
    return HTTPResponse(body, status=status, content_type="application/json")


def render_error(request: Request, exception: Exception) -> HTTPResponse:
    """Sanic's error handler for every exception."""
    if isinstance(exception, NocturnusError):
        response = envelope(
            exception.status, exception.code, exception.message, exception.details
        )
        if isinstance(exception, (RateLimited, WriteContention)):
            response.headers["Retry-After"] = str(exception.retry_after_s)
        return response
    if isinstance(exception, SanicException) and exception.status_code < 500:
        status = exception.status_code
        code = _SANIC_CODES.get(status, "VALIDATION_ERROR")
        message = str(exception) or code
        if status == 404:
            message = f"No route for {request.method} {request.path}"
        elif status == 405:
            message = f"Method {request.method} is not allowed on {request.path}"
        response = envelope(status, code, message)
        allowed = getattr(exception, "headers", {}).get("Allow")
        if allowed:
            response.headers["Allow"] = allowed
        return response
    log.exception("unhandled error on %s %s", request.method, request.path)
    return envelope(500, "INTERNAL_ERROR", "internal error; this is a bug, please report it")
