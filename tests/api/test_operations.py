"""Operations surface (issue 9): /metrics, /health and the structured logs."""

from __future__ import annotations

import shutil
import socket
import struct
import time
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from nocturnus.api import health
from nocturnus.api.metrics import Metrics
from tests.api.jsonrpc import HttpMcp
from tests.server import TEST_MASTER_KEY, Server


def scrape(server: Server) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    """``{family name: [(sample name, labels, value)]}`` from a real scrape."""
    response = server.request("GET", "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        family.name: [(s.name, s.labels, s.value) for s in family.samples]
        for family in text_string_to_metric_families(response.text)
    }


def value(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    return sum(v for n, l, v in samples if n == name and labels.items() <= l.items())


def test_metrics_count_requests_events_and_facts(server: Server, tenant: str) -> None:
    before = scrape(server)
    for i in range(3):
        told = server.request("POST", "/tell", tenant=tenant, json={"predicate": "m", "args": [i]})
        assert told.status_code == 200
    assert server.request("POST", "/tell", tenant=tenant, json={"bogus": 1}).status_code == 400
    after = scrape(server)

    requests = "nocturnus_http_requests_total"
    assert value(after["nocturnus_http_requests"], requests, route="/tell", status="200") - value(
        before["nocturnus_http_requests"], requests, route="/tell", status="200"
    ) == 3
    assert value(after["nocturnus_http_requests"], requests, route="/tell", status="400") >= 1
    latency = after["nocturnus_http_request_duration_seconds"]
    assert value(latency, "nocturnus_http_request_duration_seconds_count", route="/tell") >= 4

    appended = "nocturnus_events_appended_total"
    grew = value(after["nocturnus_events_appended"], appended, database="default") - value(
        before["nocturnus_events_appended"], appended, database="default"
    )
    assert grew >= 3  # one event per fact (plus the tenant's creation the first time)
    batches = after["nocturnus_group_commit_batch_requests"]
    commits = value(after["nocturnus_group_commits"], "nocturnus_group_commits_total", database="default")
    assert value(batches, "nocturnus_group_commit_batch_requests_count", database="default") == commits
    fsync = after["nocturnus_commit_duration_seconds"]
    assert value(fsync, "nocturnus_commit_duration_seconds_count", database="default") == commits
    assert value(after["nocturnus_writer_up"], "nocturnus_writer_up", database="default") == 1
    assert value(after["nocturnus_facts"], "nocturnus_facts", database="default") >= 3
    assert value(after["nocturnus_tenants"], "nocturnus_tenants", database="default") >= 1
    assert value(after["nocturnus_replay_duration_seconds"], "nocturnus_replay_duration_seconds_count", database="default") >= 1
    assert value(after["nocturnus_data_dir_free_bytes"], "nocturnus_data_dir_free_bytes") > 0


def test_metrics_have_no_tenant_label_nor_raw_paths(server: Server, tenant: str) -> None:
    server.request("POST", "/tell", tenant=tenant, json={"predicate": "p", "args": ["a"]})
    server.request("DELETE", f"/admin/databases/default/tenants/{tenant}")
    server.request("GET", f"/no/such/{tenant}")
    text = server.request("GET", "/metrics").text
    assert tenant not in text
    families = scrape(server)
    labels = {name for samples in families.values() for _, l, _ in samples for name in l}
    assert "tenant" not in labels
    routes = {l["route"] for _, l, _ in families["nocturnus_http_requests"] if "route" in l}
    assert "/admin/databases/<db>/tenants/<tenant>" in routes
    assert "<unmatched>" in routes


def test_each_app_has_its_own_registry() -> None:
    mcp = SimpleNamespace(counts={"sse": 1, "http": 3})
    first, second = Metrics(lambda: None, lambda: mcp), Metrics(lambda: None)
    first.observe_request("GET", "/x", 200, 0.01)
    assert b'route="/x"' in first.render()
    assert b'route="/x"' not in second.render()
    assert b'nocturnus_mcp_sessions{transport="http"} 3.0' in first.render()
    assert b'nocturnus_mcp_sessions{transport="http"} 0.0' in second.render()


def test_metrics_count_open_mcp_sessions(fresh_server: Server) -> None:
    fresh_server.start()
    sessions = "nocturnus_mcp_sessions"
    assert value(scrape(fresh_server)[sessions], sessions, transport="http") == 0
    client = HttpMcp(fresh_server)
    client.initialize()
    assert value(scrape(fresh_server)[sessions], sessions, transport="http") == 1
    ended = fresh_server.request("DELETE", "/mcp", headers={"Mcp-Session-Id": client.session_id or ""})
    assert ended.status_code < 300
    assert value(scrape(fresh_server)[sessions], sessions, transport="http") == 0


def test_health_reports_checks(server: Server) -> None:
    response = server.request("GET", "/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert {"data_dir", "disk_space", "writers"} <= set(body["checks"])
    assert all(c["status"] == "pass" for c in body["checks"].values())
    assert server.request("GET", "/health/live").json() == {"status": "ok"}
    assert server.request("GET", "/health/ready").json() == {"status": "ok"}


def test_snapshots_show_in_metrics_and_health(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", env={"NOCTURNUS_SNAPSHOT_EVERY": "3"}).start()
    try:
        for i in range(7):
            told = server.request("POST", "/tell", tenant="acme", json={"predicate": "s", "args": [i]})
            assert told.status_code == 200
        name = "nocturnus_snapshot_duration_seconds"
        deadline = time.monotonic() + 30  # snapshots are written in the background
        while value(scrape(server)[name], f"{name}_count", database="default") < 1:
            assert time.monotonic() < deadline, "no snapshot was reported"
            time.sleep(0.05)
        check = server.request("GET", "/health").json()["checks"]["snapshots"]
        assert check["status"] == "pass" and "default:" in check["message"]
    finally:
        assert server.stop() == 0


def test_health_fails_with_503_when_the_data_dir_is_gone(fresh_server: Server) -> None:
    fresh_server.start()
    shutil.rmtree(fresh_server.data_dir)
    response = fresh_server.request("GET", "/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "failing"
    assert body["checks"]["data_dir"]["status"] == "fail"
    assert fresh_server.request("GET", "/health/live").status_code == 200


def _db(name: str, alive: bool = True, running_s: float = 0.0, snapshot_at: float = 0.0,
        last_commit_at: float = 0.0) -> SimpleNamespace:
    stats = SimpleNamespace(commit_running_s=lambda now=None: running_s, last_commit_at=last_commit_at)
    return SimpleNamespace(
        name=name,
        writer=SimpleNamespace(is_alive=alive, stats=stats),
        stats=SimpleNamespace(last_snapshot_at=snapshot_at),
    )


@pytest.mark.parametrize(
    ("dbs", "status"),
    [
        ([_db("a"), _db("b")], "pass"),
        ([_db("a"), _db("b", alive=False)], "fail"),
        ([_db("a", running_s=health.STALLED_COMMIT_S + 1)], "warn"),
        ([_db("a", running_s=60), _db("b", alive=False)], "fail"),
    ],
)
@pytest.mark.parametrize("detail", [True, False])
def test_writer_check(dbs: list[SimpleNamespace], status: str, detail: bool) -> None:
    check = health._writers_check(dbs, detail)
    assert check["status"] == status
    assert ("a:" in check["message"]) == detail  # names only for who may see them


@pytest.mark.parametrize("detail", [True, False])
def test_snapshot_check_only_when_snapshots_are_known(detail: bool) -> None:
    now = time.time()
    assert health._snapshots_check([_db("a")], detail) is None
    fresh = health._snapshots_check([_db("a", snapshot_at=now - 10, last_commit_at=now)], detail)
    assert fresh is not None and fresh["status"] == "pass"
    stale_at = now - health.SNAPSHOT_MAX_AGE_S - 60
    stale = health._snapshots_check([_db("a", snapshot_at=stale_at, last_commit_at=now)], detail)
    assert stale is not None and stale["status"] == "warn"
    idle = health._snapshots_check(
        [_db("a", snapshot_at=stale_at, last_commit_at=stale_at - 1)], detail
    )
    assert idle is not None and idle["status"] == "pass"


def test_json_logs_carry_request_ids_and_no_fact_contents(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", env={"NOCTURNUS_LOG_FORMAT": "json"}).start()
    secret = "confidential_fact_value_4711"
    try:
        told = server.request(
            "POST", "/tell", tenant="acme", json={"predicate": "salary", "args": [secret, 99]},
            headers={"X-Request-ID": "req-logs-1"},
        )
        assert told.status_code == 200
        server.request("POST", "/tell", tenant="acme", json={"predicate": secret, "args": "x"})
        server.request("GET", "/no/such/route", headers={"X-Request-ID": "req-logs-404"})
    finally:
        assert server.stop() == 0
    lines = [line for line in server.output().splitlines() if line.strip()]
    entries = [orjson.loads(line) for line in lines]  # every line is one JSON object
    assert all(e["request_id"] and {"ts", "level", "logger", "message"} <= set(e) for e in entries)
    access = {e["request_id"]: e for e in entries if e["logger"] == "nocturnus.access"}
    tell = access["req-logs-1"]
    assert (tell["method"], tell["route"], tell["status"]) == ("POST", "/tell", 200)
    assert tell["duration_ms"] >= 0
    assert access["req-logs-404"]["status"] == 404
    assert access["req-logs-404"]["route"] == "<unmatched>"
    assert any("listening" in e["message"] for e in entries)
    assert secret not in server.output()
    assert TEST_MASTER_KEY not in server.output()


def test_bad_log_format_is_a_one_line_startup_error(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", env={"NOCTURNUS_LOG_FORMAT": "xml"})
    with pytest.raises(RuntimeError, match="log_format"):
        server.start(timeout_s=10)


def _hang_up_during_tells(port: int, count: int, round_: int) -> None:
    """Send ``count`` tells on their own connections, then reset them all unanswered.

    Each round tells a tenant not loaded yet: every handler then waits for its load
    (thread hops through the writer and the reader), so the resets find them waiting.
    """
    sockets = []
    for i in range(count):
        conn = socket.create_connection(("127.0.0.1", port))
        body = b'{"predicate":"hangup","args":["r%d",%d]}' % (round_, i)
        conn.sendall(
            b"POST /tell HTTP/1.1\r\nHost: test\r\nX-Tenant-ID: hangup%d\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (round_, len(body), body)
        )
        sockets.append(conn)
    for conn in sockets:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()


def test_a_client_hanging_up_is_not_a_server_error(tmp_path: Path) -> None:
    """Sanic cancels the handler of a lost connection and renders a 500 nobody gets:
    the access log and the metrics say 499 (client closed request) instead."""
    server = Server(tmp_path / "data", env={"NOCTURNUS_LOG_FORMAT": "json"}).start()
    try:
        statuses: set[int] = set()
        for round_ in range(50):  # until some request was cut while it waited
            _hang_up_during_tells(server.port, 100, round_)
            time.sleep(0.3)
            metrics = server.request("GET", "/metrics").text
            if 'route="/tell",status="499"' in metrics:
                break
        assert 'route="/tell",status="499"' in metrics
        assert 'route="/tell",status="500"' not in metrics
    finally:
        assert server.stop() == 0
    for line in server.output().splitlines():
        entry = orjson.loads(line)
        if entry["logger"] == "nocturnus.access" and entry["route"] == "/tell":
            statuses.add(entry["status"])
        assert entry["level"] != "ERROR", entry
    assert 499 in statuses and 500 not in statuses
