"""Log lines: plain text or JSON lines, each carrying the id of the request it belongs to.

The request middleware puts the request id in :data:`REQUEST_ID`; a filter on the handler
copies it into every record logged while that request runs (also from code that knows
nothing about requests: the service, the store, a thread started with
``asyncio.to_thread``). Lines logged outside a request carry ``-``.

Records are formatted and written by a background thread (``QueueHandler`` → one
writer thread): a slow stderr (a pipe to journald, a full terminal) must not stall the
event loop, which would otherwise block on every line it logs.

What may be logged at INFO: routes, statuses, durations, database names, counts. Never
fact or rule contents, keys or request bodies: those may only appear in DEBUG lines.
"""

from __future__ import annotations

import atexit
import copy
import logging
import os
import queue
import sys
import threading
import time
from contextvars import ContextVar
from datetime import UTC, datetime
from logging.handlers import QueueHandler
from pathlib import Path
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


def iso_time(created: float) -> str:
    """A record's creation time as JSON lines show it (UTC, milliseconds)."""
    return datetime.fromtimestamp(created, tz=UTC).isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, request_id, then extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": iso_time(record.created),
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


def make_formatter(log_format: str) -> logging.Formatter:
    """The formatter of ``log_format`` lines.

    :raises StartupError: an unknown format.
    """
    if log_format not in FORMATS:
        raise StartupError(
            f"log_format (NOCTURNUS_LOG_FORMAT) must be one of {', '.join(FORMATS)},"
            f" got {log_format!r}"
        )
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


AccessEntry = tuple[float, str, str, str, str, int, "float | None"]
"""``(created, request_id, method, route, path, status, seconds)`` of one answered request."""

ACCESS_LOGGER = "nocturnus.access"
_STOP = object()
_BATCH = 1024


class _LogWriter:
    """The one thread that formats and writes every line, a batch per write.

    Ordinary records arrive already prepared by :class:`_Enqueue`. Access entries
    arrive as plain tuples (:func:`log_access`): every request logs one, and building a
    ``LogRecord`` for it on the event loop, copying it for the queue and formatting it
    through the generic path cost more CPU than the request's own durable write. Lines
    queued together are written with one ``write`` and one ``flush``.
    """

    def __init__(
        self,
        formatter: logging.Formatter,
        stream: IO[str],
        log_file: RotatingFile | None = None,
    ) -> None:
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._formatter = formatter
        self._json = isinstance(formatter, JsonFormatter)
        self._stream = stream
        self._file = log_file
        self._thread = threading.Thread(target=self._run, name="nocturnus-log", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Write out everything queued so far, then end the thread."""
        self.queue.put(_STOP)
        self._thread.join()
        if self._file is not None:
            self._file.close()

    def _run(self) -> None:
        get, get_nowait = self.queue.get, self.queue.get_nowait
        running = True
        while running:
            items = [get()]
            try:
                while len(items) < _BATCH:
                    items.append(get_nowait())
            except queue.Empty:
                pass
            lines: list[str] = []
            for item in items:
                if item is _STOP:
                    running = False
                elif type(item) is tuple:
                    lines.append(self._access_line(item))
                else:
                    lines.append(self._record_line(item))
            if lines:
                self._write("\n".join(lines) + "\n")

    def _record_line(self, record: logging.LogRecord) -> str:
        try:
            return self._formatter.format(record)
        except Exception:  # noqa: BLE001 - a bad record must not end the log thread
            return f"{record.levelname} {record.name} unformattable log record: {record.msg!r}"

    def _access_line(self, entry: AccessEntry) -> str:
        """An access entry formatted exactly as the formatter would the equal record."""
        created, request_id, method, route, path, status, seconds = entry
        ms = (seconds or 0.0) * 1000
        message = f"{method} {path} {status} {ms:.1f}ms"
        if not self._json:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created))
            msecs = int((created - int(created)) * 1000)
            return f"{stamp},{msecs:03d} INFO {ACCESS_LOGGER} [{request_id}] {message}"
        return orjson.dumps(
            {
                "ts": iso_time(created),
                "level": "INFO",
                "logger": ACCESS_LOGGER,
                "message": message,
                "request_id": request_id,
                "method": method,
                "route": route,
                "path": path,
                "status": status,
                "duration_ms": None if seconds is None else round(ms, 3),
            }
        ).decode()

    def _write(self, text: str) -> None:
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):  # stderr closed or gone: nothing left to tell
            pass
        if self._file is not None:
            self._file.write(text)


LOG_FILE_MAX_BYTES = 50 * 1024 * 1024
LOG_FILE_BACKUPS = 20


class RotatingFile:
    """``NOCTURNUS_LOG_FILE`` (the original's ``LOG_FILE``): lines appended to a file
    that is renamed ``.1`` (``.2``... up to :data:`LOG_FILE_BACKUPS`, the oldest
    dropped) once it passes :data:`LOG_FILE_MAX_BYTES`, so it never fills the disk.

    Written only by the log thread. A write that fails (disk full, file removed) is
    dropped: stderr still has the line.
    """

    def __init__(
        self,
        path: Path,
        max_bytes: int = LOG_FILE_MAX_BYTES,
        backups: int = LOG_FILE_BACKUPS,
    ) -> None:
        self.path = path
        self._max_bytes = max_bytes
        self._backups = backups
        self._handle = self._open()

    def _open(self) -> IO[str]:
        """:raises StartupError: the file cannot be opened for appending."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as e:
            raise StartupError(
                f"log_file (NOCTURNUS_LOG_FILE): cannot open {self.path}: {e.strerror}"
            ) from None
        return os.fdopen(fd, "a", encoding="utf-8")

    def write(self, text: str) -> None:
        try:
            if self._handle.tell() + len(text) > self._max_bytes and self._handle.tell():
                self._rotate()
            self._handle.write(text)
            self._handle.flush()
        except (OSError, ValueError, StartupError):
            pass

    def _rotate(self) -> None:
        self._handle.close()
        for n in range(self._backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{n + 1}"))
        self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        self._handle = self._open()

    def close(self) -> None:
        self._handle.close()


_writer: _LogWriter | None = None


def configure_logging(
    log_format: str,
    log_level: str,
    stream: IO[str] | None = None,
    log_file: Path | None = None,
) -> None:
    """Send every logger (ours, Sanic's) through one queue to one writer thread.

    The request id is stamped in the logging thread (where the context is); formatting
    and writing happen in the writer thread, flushed at exit. With ``log_file`` each
    line also goes to that file (:class:`RotatingFile`).

    :raises StartupError: an unknown format or level, or a log file that cannot be
        opened.
    """
    global _writer
    level = logging.getLevelName(log_level.upper())
    if not isinstance(level, int):
        raise StartupError(f"log_level (NOCTURNUS_LOG_LEVEL) is not a level: {log_level!r}")
    formatter = make_formatter(log_format)
    stop_logging()
    rotating = None if log_file is None else RotatingFile(log_file)
    _writer = _LogWriter(formatter, stream or sys.stderr, rotating)
    enqueue = _Enqueue(_writer.queue)
    enqueue.addFilter(RequestIdFilter())
    atexit.unregister(stop_logging)
    atexit.register(stop_logging)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(enqueue)
    root.setLevel(level)


def log_access(entry: AccessEntry) -> bool:
    """Queue one access line for the writer thread; False when logging is not configured.

    The caller checks the ``nocturnus.access`` level first and, on False, logs the
    entry as an ordinary record.
    """
    writer = _writer
    if writer is None:
        return False
    writer.queue.put(entry)
    return True


def stop_logging() -> None:
    """Write out every queued line and stop the writer thread (idempotent)."""
    global _writer
    if _writer is not None:
        writer, _writer = _writer, None
        writer.stop()
