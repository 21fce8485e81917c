"""Log lines: plain text or JSON lines, each carrying the id of the request it belongs to.

The request middleware puts the request id in :data:`REQUEST_ID`; a filter on the handler
copies it into every record logged while that request runs (also from code that knows
nothing about requests: the service, the store, a thread started with
``asyncio.to_thread``). Lines logged outside a request carry ``-``.

Records are formatted and written by a background thread (``QueueHandler`` →
``QueueListener``): a slow stderr (a pipe to journald, a full terminal) must not stall the
event loop, which would otherwise block on every line it logs.

What may be logged at INFO: routes, statuses, durations, database names, counts. Never
fact or rule contents, keys or request bodies: those may only appear in DEBUG lines.
"""

from __future__ import annotations

import atexit
import copy
import logging
import queue
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from logging.handlers import QueueHandler, QueueListener
from typing import IO, Any

import orjson

from nocturnus.errors import StartupError

REQUEST_ID: ContextVar[str | None] = ContextVar("nocturnus_request_id", default=None)
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "request_id", "taskName", "exc_text",
}
_listener: QueueListener | None = None


class RequestIdFilter(logging.Filter):
    """Stamp ``record.request_id`` from the context unless ``extra=`` already set it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get() or "-"
        return True


class _Enqueue(QueueHandler):
    """Hand records to the writer thread with the message and traceback already rendered.

    Unlike the stock ``prepare``, the traceback stays apart from the message, so the
    JSON formatter can put it in its own field.
    """

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record = copy.copy(record)
        record.msg = record.getMessage()
        record.args = None
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        return record


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, request_id, then extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or REQUEST_ID.get() or "-",
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode()


def make_handler(log_format: str, stream: IO[str] | None = None) -> logging.Handler:
    """The handler that writes lines in ``log_format`` (called in the writer thread).

    :raises StartupError: an unknown format.
    """
    if log_format not in FORMATS:
        raise StartupError(
            f"log_format (NOCTURNUS_LOG_FORMAT) must be one of {', '.join(FORMATS)},"
            f" got {log_format!r}"
        )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    return handler


def configure_logging(log_format: str, log_level: str, stream: IO[str] | None = None) -> None:
    """Send every logger (ours, Sanic's) through one queue to one writer thread.

    The request id is stamped in the logging thread (where the context is); formatting
    and writing happen in the writer thread, flushed at exit.

    :raises StartupError: an unknown format or level.
    """
    global _listener
    level = logging.getLevelName(log_level.upper())
    if not isinstance(level, int):
        raise StartupError(f"log_level (NOCTURNUS_LOG_LEVEL) is not a level: {log_level!r}")
    handler = make_handler(log_format, stream)
    stop_logging()
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    enqueue = _Enqueue(records)
    enqueue.addFilter(RequestIdFilter())
    _listener = QueueListener(records, handler)
    _listener.start()
    atexit.unregister(stop_logging)
    atexit.register(stop_logging)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(enqueue)
    root.setLevel(level)


def stop_logging() -> None:
    """Write out every queued line and stop the writer thread (idempotent)."""
    global _listener
    if _listener is not None:
        listener, _listener = _listener, None
        listener.stop()
