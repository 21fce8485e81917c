"""Per-request bookkeeping: the request id, one access log line, the request metrics.

:func:`begin` runs as the first request middleware, :func:`finish` in the response
middleware. A request that fails routing (404, 405) skips the request middleware, so
``finish`` copes with a request ``begin`` never saw.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sanic import HTTPResponse, Request

from nocturnus.api.metrics import route_label
from nocturnus.logs import ACCESS_LOGGER, REQUEST_ID, log_access

log = logging.getLogger(ACCESS_LOGGER)

MAX_REQUEST_ID = 128
CLIENT_CLOSED_REQUEST = 499
"""Logged and counted for a request whose client went away before the answer."""


def _request_id(request: Request, new_id: Callable[[], str]) -> str:
    given = request.headers.get("X-Request-ID", "").strip()
    return given[:MAX_REQUEST_ID] if given else new_id()


def begin(request: Request, new_id: Callable[[], str]) -> None:
    """Take the client's ``X-Request-ID`` or a new one; start the clock."""
    request.ctx.request_id = _request_id(request, new_id)
    request.ctx.started = time.perf_counter()
    REQUEST_ID.set(request.ctx.request_id)


def finish(request: Request, response: HTTPResponse, new_id: Callable[[], str]) -> str:
    """Log and count the answered request; return its request id."""
    request_id = getattr(request.ctx, "request_id", None)
    if request_id is None:
        request_id = request.ctx.request_id = _request_id(request, new_id)
    started = getattr(request.ctx, "started", None)
    seconds = None if started is None else time.perf_counter() - started
    route = route_label(request)
    status = response.status
    if status >= 500 and request.conn_info is not None and request.conn_info.lost:
        # The client hung up while its request ran (Sanic cancels the handler and
        # renders a 500 nobody receives): not a server error, not one to alert on.
        status = CLIENT_CLOSED_REQUEST
    metrics = getattr(request.app.ctx, "metrics", None)
    if metrics is not None:
        metrics.observe_request(request.method, route, status, seconds)
    if not log.isEnabledFor(logging.INFO):
        return request_id
    entry = (time.time(), request_id, request.method, route, request.path, status, seconds)
    if not log_access(entry):  # logging not configured (an embedded app): a plain record
        log.info(
            "%s %s %d %.1fms",
            request.method,
            request.path,
            status,
            (seconds or 0.0) * 1000,
            extra={
                "request_id": request_id,
                "method": request.method,
                "route": route,
                "path": request.path,
                "status": status,
                "duration_ms": None if seconds is None else round(seconds * 1000, 3),
            },
        )
    return request_id
