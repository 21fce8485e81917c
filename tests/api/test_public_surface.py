"""What ``/metrics`` and ``/health`` tell a caller without a key (issue 14, item 9).

The reproduction: with auth on, an unauthenticated scrape named every database (317 of
them: 2.2 MB) and ``/health`` named every database and the data directory's path. Now
both answer server-wide figures to anyone, and per-database detail only to a key that
may see every database (``metrics_read`` without limits).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.server import Server

ADMIN = "test-admin-key-" + uuid.uuid4().hex
SECRET_NAMES = [f"acquisition_{i}_{uuid.uuid4().hex[:6]}" for i in range(3)]


@pytest.fixture(scope="module")
def public_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {
        "NOCTURNUS_AUTH": "on",
        "NOCTURNUS_ADMIN_KEY": ADMIN,
        "NOCTURNUS_AUTH_FAILURES_PER_MINUTE": "0",
        "NOCTURNUS_RATE_LIMIT_ADMIN_RPM": "0",
        "NOCTURNUS_RATE_LIMIT_READER_RPM": "0",
        "NOCTURNUS_SNAPSHOT_EVERY": "2",
    }
    srv = Server(tmp_path_factory.mktemp("public") / "data", env=env).start()
    admin = {"Authorization": f"Bearer {ADMIN}"}
    for name in SECRET_NAMES:
        made = srv.request("POST", "/databases", headers=admin, json={"name": name})
        assert made.status_code in (200, 201), made.text
        for i in range(3):  # events, a loaded tenant, a snapshot
            told = srv.request("POST", "/tell", headers=admin, database=name, tenant="t",
                               json={"predicate": "p", "args": [i]})
            assert told.status_code == 200, told.text
    yield srv
    srv.stop()


def reader_key(server: Server, **scope: list[str]) -> str:
    made = server.request("POST", "/auth/keys", headers={"Authorization": f"Bearer {ADMIN}"},
                          json={"role": "reader", **scope})
    assert made.status_code == 201, made.text
    key: str = made.json()["key"]
    return key


def leaks(server: Server, text: str) -> list[str]:
    """Database names and the data directory's path found in ``text``."""
    found = [name for name in SECRET_NAMES if name in text]
    where = server.data_dir.resolve()
    return found + [str(p) for p in (where, where.parent) if str(p) in text]


def families(text: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    return {
        family.name: [(s.name, s.labels, s.value) for s in family.samples]
        for family in text_string_to_metric_families(text)
    }


@pytest.mark.parametrize("headers", [{}, "reader", "scoped admin"])
def test_metrics_without_a_detail_key_name_no_database_and_no_path(
    public_server: Server, headers: object
) -> None:
    if headers == "reader":
        headers = {"Authorization": f"Bearer {reader_key(public_server)}"}
    elif headers == "scoped admin":
        made = public_server.request(
            "POST", "/auth/keys", headers={"Authorization": f"Bearer {ADMIN}"},
            json={"role": "admin", "databases": [SECRET_NAMES[0]]})
        headers = {"Authorization": f"Bearer {made.json()['key']}"}
    assert isinstance(headers, dict)
    response = public_server.request("GET", "/metrics", headers=headers)
    assert response.status_code == 200
    assert leaks(public_server, response.text) == []
    found = families(response.text)
    labels = {name for samples in found.values() for _, l, _ in samples for name in l}
    assert "database" not in labels
    # Server-wide figures are all there: events of every database, summed.
    appended = found["nocturnus_events_appended"]
    assert next(v for n, _, v in appended if n == "nocturnus_events_appended_total") >= 9
    assert found["nocturnus_writer_up"][0][2] == 1
    assert found["nocturnus_databases"][0][2] >= len(SECRET_NAMES)


def test_metrics_with_a_detail_key_name_each_database(public_server: Server) -> None:
    response = public_server.request("GET", "/metrics", headers={"X-API-Key": ADMIN})
    assert response.status_code == 200
    found = families(response.text)
    named = {l["database"] for _, l, _ in found["nocturnus_events_appended"]}
    assert set(SECRET_NAMES) | {"_system"} <= named


def test_a_wrong_key_on_metrics_is_refused_not_ignored(public_server: Server) -> None:
    response = public_server.request("GET", "/metrics", headers={"X-API-Key": "nct_wrong"})
    assert response.status_code == 401


def test_the_public_scrape_does_not_grow_with_the_databases(public_server: Server) -> None:
    public = public_server.request("GET", "/metrics").text
    detailed = public_server.request("GET", "/metrics", headers={"X-API-Key": ADMIN}).text
    storage = [line for line in public.splitlines() if line.startswith("nocturnus_events_appended")]
    assert len(storage) == 1 < len(SECRET_NAMES)
    assert len(public) < len(detailed)


@pytest.mark.parametrize("with_reader_key", [False, True])
def test_health_without_a_detail_key_names_no_database_and_no_path(
    public_server: Server, with_reader_key: bool
) -> None:
    headers = {"X-API-Key": reader_key(public_server)} if with_reader_key else {}
    response = public_server.request("GET", "/health", headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert leaks(public_server, response.text) == []
    assert {"data_dir", "disk_space", "writers", "snapshots"} <= set(body["checks"])
    assert "alive" in body["checks"]["writers"]["message"]


def test_health_with_a_detail_key_names_each_database(public_server: Server) -> None:
    response = public_server.request("GET", "/health", headers={"X-API-Key": ADMIN})
    body = response.json()
    for name in SECRET_NAMES:
        assert f"{name}: alive" in body["checks"]["writers"]["message"]
    assert str(public_server.data_dir) in body["checks"]["data_dir"]["message"]
