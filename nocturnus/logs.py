"""Log lines: plain text or JSON lines, each carrying the id of the request it belongs to.

The request middleware puts the request id in :data:`REQUEST_ID`; a filter on the handler
copies it into every record logged while that request runs (also from code that knows
nothing about requests: the service, the store, a thread started with
``asyncio.to_thread``). Lines logged outside a request carry ``-``.

What may be logged at INFO: routes, statuses, durations, database names, counts. Never
fact or rule contents, keys or request bodies: those may only appear in DEBUG lines.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import IO, Any

import orjson

from nocturnus.errors import StartupError

REQUEST_ID: ContextVar[str | None] = ContextVar("nocturnus_request_id", default=None)
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "request_id", "taskName",
}


class RequestIdFilter(logging.Filter):
    """Stamp ``record.request_id`` from the context unless ``extra=`` already set it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, request_id, then extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or REQUEST_ID.get() or "-",
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode()


def make_handler(log_format: str, stream: IO[str] | None = None) -> logging.Handler:
    """:raises StartupError: an unknown format."""
    if log_format not in FORMATS:
        raise StartupError(
            f"log_format (NOCTURNUS_LOG_FORMAT) must be one of {', '.join(FORMATS)},"
            f" got {log_format!r}"
        )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    return handler


def configure_logging(log_format: str, log_level: str, stream: IO[str] | None = None) -> None:
    """Send every logger (ours, Sanic's) through one handler in the chosen format.

    :raises StartupError: an unknown format or level.
    """
    level = logging.getLevelName(log_level.upper())
    if not isinstance(level, int):
        raise StartupError(f"log_level (NOCTURNUS_LOG_LEVEL) is not a level: {log_level!r}")
    handler = make_handler(log_format, stream)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
