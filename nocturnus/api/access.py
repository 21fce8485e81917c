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
from nocturnus.logs import REQUEST_ID

log = logging.getLogger("nocturnus.access")

MAX_REQUEST_ID = 128


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
    metrics = getattr(request.app.ctx, "metrics", None)
    if metrics is not None:
        metrics.observe_request(request.method, route, status, seconds)
    # Set it here too: a keep-alive connection reuses one task, and a request that
    # failed routing never ran begin().
    if not log.isEnabledFor(logging.INFO):
        return request_id
    token = REQUEST_ID.set(request_id)
    try:
        # log.info(...) without its search of the stack for the caller (file, line,
        # function): no access-log format shows them, and every request comes here.
        log.handle(
            log.makeRecord(
                log.name,
                logging.INFO,
                __file__,
                0,
                "%s %s %d %.1fms",
                (request.method, request.path, status, (seconds or 0.0) * 1000),
                None,
                "finish",
                {
                    "method": request.method,
                    "route": route,
                    "path": request.path,
                    "status": status,
                    "duration_ms": None if seconds is None else round(seconds * 1000, 3),
                },
            )
        )
    finally:
        REQUEST_ID.reset(token)
    return request_id
