"""Log lines: formats, request ids from the context, the background writer (issue 9)."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator

import orjson
import pytest

from nocturnus.errors import StartupError
from nocturnus.logs import (
    ACCESS_LOGGER,
    REQUEST_ID,
    configure_logging,
    log_access,
    make_formatter,
    stop_logging,
)


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    yield stream
    stop_logging()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[str]:
    stop_logging()  # flush the writer thread
    return stream.getvalue().splitlines()


def test_json_lines_carry_the_request_id_of_their_task(captured: io.StringIO) -> None:
    configure_logging("json", "INFO", captured)
    log = logging.getLogger("nocturnus.test")

    async def request(request_id: str) -> None:
        REQUEST_ID.set(request_id)
        await asyncio.sleep(0)
        log.info("handled %s", request_id, extra={"status": 200})
        await asyncio.to_thread(log.info, "in a worker thread")

    async def main() -> None:
        await asyncio.gather(request("r1"), request("r2"))

    asyncio.run(main())
    log.info("outside any request")
    entries = [orjson.loads(line) for line in lines(captured)]
    by_message = {e["message"]: e for e in entries}
    assert by_message["handled r1"]["request_id"] == "r1"
    assert by_message["handled r2"]["request_id"] == "r2"
    assert by_message["handled r1"]["status"] == 200
    assert sorted(e["request_id"] for e in entries if e["message"] == "in a worker thread") == ["r1", "r2"]
    assert by_message["outside any request"]["request_id"] == "-"


def test_tracebacks_stay_apart_from_the_message(captured: io.StringIO) -> None:
    configure_logging("json", "INFO", captured)
    try:
        raise ValueError("bad")
    except ValueError:
        logging.getLogger("nocturnus.test").exception("failed %d", 1)
    [entry] = [orjson.loads(line) for line in lines(captured)]
    assert entry["message"] == "failed 1"
    assert entry["level"] == "ERROR" and "ValueError: bad" in entry["exc_info"]


def test_text_format_and_level(captured: io.StringIO) -> None:
    configure_logging("text", "warning", captured)
    REQUEST_ID.set("abc")
    logging.getLogger("nocturnus.test").info("hidden")
    logging.getLogger("nocturnus.test").warning("shown")
    REQUEST_ID.set(None)
    [line] = lines(captured)
    assert line.endswith("WARNING nocturnus.test [abc] shown")


@pytest.mark.parametrize(("fmt", "level", "name"), [("xml", "INFO", "log_format"), ("json", "LOUD", "log_level")])
def test_bad_settings_are_startup_errors(fmt: str, level: str, name: str) -> None:
    with pytest.raises(StartupError, match=name):
        configure_logging(fmt, level)


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_access_lines_read_as_the_equal_record_would(captured: io.StringIO, fmt: str) -> None:
    """Access entries skip LogRecord on the event loop; their lines must not differ."""
    configure_logging(fmt, "INFO", captured)
    created = 1_795_000_000.2468
    assert log_access((created, "rid-7", "POST", "/tell", "/tell", 200, 0.0012345))
    assert log_access((created, "rid-8", "GET", "<unmatched>", "/nope", 404, None))
    expected = []
    formatter = make_formatter(fmt)
    for request_id, method, route, path, status, ms in [
        ("rid-7", "POST", "/tell", "/tell", 200, 1.2345),
        ("rid-8", "GET", "<unmatched>", "/nope", 404, None),
    ]:
        record = logging.makeLogRecord(
            {
                "name": ACCESS_LOGGER,
                "levelno": logging.INFO,
                "levelname": "INFO",
                "msg": "%s %s %d %.1fms",
                "args": (method, path, status, ms or 0.0),
                "created": created,
                "msecs": int((created - int(created)) * 1000) + 0.0,
                "request_id": request_id,
                "method": method,
                "route": route,
                "path": path,
                "status": status,
                "duration_ms": None if ms is None else round(ms, 3),
            }
        )
        expected.append(formatter.format(record))
    got = lines(captured)
    if fmt == "json":
        assert [orjson.loads(g) for g in got] == [orjson.loads(e) for e in expected]
    else:
        assert got == expected


def test_access_entries_wait_for_configured_logging() -> None:
    stop_logging()
    assert not log_access((0.0, "rid", "GET", "/", "/", 200, None))


def test_log_file_gets_every_line_and_rotates(tmp_path, captured: io.StringIO) -> None:
    from nocturnus.logs import RotatingFile

    path = tmp_path / "noc.log"
    rotating = RotatingFile(path, max_bytes=100, backups=2)
    for n in range(8):
        rotating.write(f"line {n} " + "x" * 30 + "\n")
    rotating.close()
    kept = [path.with_name(f"noc.log.{n}") for n in (2, 1)] + [path]
    text = "".join(p.read_text() for p in kept)
    assert [line.split()[1] for line in text.splitlines()] == ["2", "3", "4", "5", "6", "7"]
    assert not path.with_name("noc.log.3").exists()
    assert oct(path.stat().st_mode & 0o777) == "0o600"

    configure_logging("text", "INFO", captured, log_file=path)
    logging.getLogger("nocturnus.test").info("to both")
    stop_logging()
    assert "to both" in captured.getvalue() and "to both" in path.read_text()


def test_an_unopenable_log_file_stops_start_up(tmp_path, captured: io.StringIO) -> None:
    with pytest.raises(StartupError, match="NOCTURNUS_LOG_FILE"):
        configure_logging("text", "INFO", captured, log_file=tmp_path / "no" / "such" / "dir.log")
