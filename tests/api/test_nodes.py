"""Many processes on one store, as real subprocesses (issue 16).

Two servers share one store: two ``nocturnus serve`` processes on one SQLite data dir
(what ``--workers 2`` runs, with a restartable process each), or two nodes on one
PostgreSQL database. Under write load through both, one is SIGKILLed: no acknowledged
write is lost, the survivor keeps serving, and the restarted one catches up and answers
byte for byte as the survivor does. A write acknowledged by one is seen by a read on the
other begun after it (many clients, random directions, tells and forgets); a tenant
deleted on one is gone on the other at once; contradictory ``REJECT`` tells racing on
the two: exactly one is stored. ``serve --workers 2`` itself is run last.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.nodes import two_servers
from tests.server import Server

TENANTS = ("acme", "globex", "initech")


@pytest.fixture(params=["sqlite", "postgresql"])
def nodes(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    """Two running servers on one store."""
    yield from two_servers(request.param, tmp_path, {})


@pytest.fixture(params=["sqlite", "postgresql"])
def flushing_nodes(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Server, Server]]:
    """Two running servers on one store, each logging the uses of facts it notes
    within 50 ms (the tests' servers otherwise log them only with writes)."""
    yield from two_servers(request.param, tmp_path, {"NOCTURNUS_USES_FLUSH_MS": "50"})


def facts(server: Server, tenant: str, predicate: str = "p") -> list[Any]:
    r = server.request("POST", "/query", tenant=tenant, json={"predicate": predicate, "args": ["?a", "?b"]})
    assert r.status_code == 200, r.text
    return sorted(tuple(row["args"]) for row in r.json()["results"])


def tell(http: httpx.Client, tenant: str, *args: Any, negated: bool = False) -> httpx.Response:
    return http.post("/tell", headers={"X-Tenant-ID": tenant},
                     json={"predicate": "p", "args": list(args), "negated": negated})


def test_kill_9_one_node_under_load_loses_nothing_and_the_restart_catches_up(
    nodes: tuple[Server, Server],
) -> None:
    a, b = nodes
    lock = threading.Lock()
    acked: set[tuple[str, str, int]] = set()
    sent: set[tuple[str, str, int]] = set()
    errors: list[str] = []
    stop = threading.Event()

    def client(name: str, seed: int) -> None:
        rng = random.Random(seed)
        https = {s.url: httpx.Client(base_url=s.url, timeout=20) for s in (a, b)}
        n = 0
        while not stop.is_set():
            n += 1
            url = rng.choice(list(https))
            tenant = rng.choice(TENANTS)
            with lock:
                sent.add((tenant, name, n))
            try:
                r = tell(https[url], tenant, name, n)
            except httpx.TransportError:
                del https[url]  # that node was killed: the outcome is unknown
                if not https:
                    return
                continue
            if r.status_code == 200:
                with lock:
                    acked.add((tenant, name, n))
            elif r.status_code != 503:  # 503: contention or shutdown, retryable
                with lock:
                    errors.append(f"{r.status_code} {r.text[:200]}")
                return

    threads = [threading.Thread(target=client, args=(f"c{i}", i)) for i in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(2.0)
    a.stop(signal.SIGKILL)
    time.sleep(1.5)  # the survivor keeps taking writes
    stop.set()
    for thread in threads:
        thread.join(60)
    assert not errors, errors[:3]
    assert len(acked) > 50  # there was load through both, before and after the kill

    survivor = {t: facts(b, t) for t in TENANTS}
    stored = {(t, *row) for t, rows in survivor.items() for row in rows}
    assert not acked - stored, f"acknowledged writes lost: {sorted(acked - stored)[:5]}"
    assert stored <= sent
    tell(b.client, "acme", "after", 0).raise_for_status()  # B still writes

    a.start()
    for tenant in TENANTS:
        for predicate in ("p", "q"):
            got_a = a.request("POST", "/query", tenant=tenant, json={"predicate": predicate, "args": ["?a", "?b"]})
            got_b = b.request("POST", "/query", tenant=tenant, json={"predicate": predicate, "args": ["?a", "?b"]})
            assert got_a.status_code == got_b.status_code == 200
            assert got_a.content == got_b.content  # the same bytes from both nodes
    assert ("after", 0) in facts(a, "acme")


def test_a_write_acknowledged_by_one_node_is_read_by_the_other(
    nodes: tuple[Server, Server],
) -> None:
    """A randomized linearizability check: each client writes its own facts through a
    random node and, once acknowledged, reads them through the other."""
    a, b = nodes
    violations: list[str] = []

    def client(name: str, seed: int) -> None:
        rng = random.Random(seed)
        https = [httpx.Client(base_url=s.url, timeout=20) for s in (a, b)]
        held: list[tuple[str, int]] = []
        for n in range(40):
            writer, reader = rng.sample(https, 2)
            if held and rng.random() < 0.3:
                tenant, m = held.pop(rng.randrange(len(held)))
                r = writer.post("/forget", headers={"X-Tenant-ID": tenant},
                                json={"predicate": "p", "args": [name, m]})
                expect_present = False
            else:
                tenant, m = rng.choice(TENANTS), n
                r = tell(writer, tenant, name, m)
                held.append((tenant, m))
                expect_present = True
            if r.status_code != 200:
                violations.append(f"write {r.status_code} {r.text[:200]}")
                return
            q = reader.post("/query", headers={"X-Tenant-ID": tenant},
                            json={"predicate": "p", "args": [name, m]})
            present = q.status_code == 200 and q.json()["count"] == 1
            if present != expect_present:
                violations.append(f"{name} {tenant} {m}: read {q.text[:200]} after the write")

    threads = [threading.Thread(target=client, args=(f"l{i}", 100 + i)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not violations, violations[:3]


def test_a_tenant_deleted_on_one_node_is_gone_on_the_other_at_once(
    nodes: tuple[Server, Server],
) -> None:
    a, b = nodes
    tell(a.client, "doomed", "x", 1).raise_for_status()
    assert facts(b, "doomed") == [("x", 1)]
    r = a.request("DELETE", "/admin/databases/default/tenants/doomed")
    assert r.status_code == 200, r.text
    assert facts(b, "doomed") == []
    listed = b.request("GET", "/admin/databases/default/tenants").json()["tenants"]
    assert "doomed" not in {t["name"] for t in listed}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_live_feed_on_one_node_shows_writes_made_through_the_other(
    backend: str, tmp_path: Path
) -> None:
    """The feed's keepalive is set beyond the test's patience: only the probe for
    other processes' commits can bring the write to it."""
    from tests.api.test_feed import feed

    for a, b in two_servers(backend, tmp_path, {"NOCTURNUS_FEED_KEEPALIVE_MS": "600000"}):
        tell(a.client, "watched", "before", 0).raise_for_status()
        assert facts(b, "watched") == [("before", 0)]  # the feed starts after it
        with feed(b, "watched") as events:
            assert events.status == 200
            tell(a.client, "watched", "x", 1).raise_for_status()
            frame = events.next(timeout_s=60)
            assert frame["event"] == "fact_asserted"
            assert frame["data"]["atom"]["args"] == ["x", 1]


def test_contradictory_reject_tells_racing_on_two_nodes_exactly_one_wins(
    nodes: tuple[Server, Server],
) -> None:
    a, b = nodes
    for round_ in range(12):
        tenant = f"race{round_}"
        barrier = threading.Barrier(2)
        statuses: dict[str, int] = {}

        def race(server: Server, negated: bool, tenant: str = tenant,
                 barrier: threading.Barrier = barrier,
                 statuses: dict[str, int] = statuses) -> None:
            barrier.wait()
            statuses[server.url] = tell(server.client, tenant, "x", 1, negated=negated).status_code

        threads = [threading.Thread(target=race, args=(a, False)),
                   threading.Thread(target=race, args=(b, True))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert sorted(statuses.values()) == [200, 409], statuses
        positive = a.request("POST", "/query", tenant=tenant, json={"predicate": "p", "args": ["x", 1]})
        negative = b.request("POST", "/query", tenant=tenant, json={"predicate": "p", "args": ["x", 1], "negated": True})
        assert positive.json()["count"] + negative.json()["count"] == 1


def window(server: Server, tenant: str) -> bytes:
    r = server.request("POST", "/context/optimize", tenant=tenant, json={"maxFacts": 5})
    assert r.status_code == 200, r.text
    return r.content


def test_uses_on_one_node_rank_the_same_on_every_node_and_after_a_restart(
    flushing_nodes: tuple[Server, Server],
) -> None:
    """Issue 16, item 3: use counts are events in the log, so the same knowledge and
    request give the same window bytes on every process, a restarted one included."""
    a, b = flushing_nodes
    for n in range(12):
        tell(a.client, "ranked", "x", n).raise_for_status()
    unused = window(b, "ranked")
    assert b'"args":["x",0]' not in unused  # the oldest fact is not among the top 5
    for _ in range(5):
        r = a.request("POST", "/ask", tenant="ranked", json={"predicate": "p", "args": ["x", 0]})
        assert r.status_code == 200 and r.json()["count"] == 1, r.text
    deadline = time.monotonic() + 30  # a logs the uses 50 ms after noting them
    while window(b, "ranked") == unused and time.monotonic() < deadline:
        time.sleep(0.05)
    used = window(b, "ranked")
    assert b'"args":["x",0]' in used  # five uses lift it into the window
    assert window(a, "ranked") == used

    a.stop()  # a clean shutdown, then a process that starts from the log
    a.start()
    assert window(a, "ranked") == used
    b.stop(signal.SIGKILL)  # and one that did not shut down cleanly
    b.start()
    assert window(b, "ranked") == used


def _workers(pid: int, data_dir: Path) -> list[int]:
    """The children of ``pid`` holding a log of ``data_dir`` open: its Sanic workers
    (not the resource tracker nor the manager's other helpers)."""
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(c) for c in (task / "children").read_text().split()]
    system_log = str(data_dir / "_system.db")
    found = []
    for child in children:
        try:
            fds = [str(fd.readlink()) for fd in Path(f"/proc/{child}/fd").iterdir()]
        except OSError:
            continue
        if system_log in fds:
            found.append(child)
    return found


def test_serve_with_two_workers_survives_a_killed_worker_and_restarts_it(
    tmp_path: Path,
) -> None:
    server = Server(tmp_path / "data", args=("--workers", "2")).start()
    assert server.process is not None
    main = server.process.pid
    try:
        workers = []
        deadline = time.monotonic() + 30
        while len(workers) < 2 and time.monotonic() < deadline:
            workers = _workers(main, server.data_dir.resolve())
            time.sleep(0.1)
        assert len(workers) == 2, workers
        # a fresh connection per request: the kernel hands them to either worker
        fresh = httpx.Client(base_url=server.url, timeout=20,
                             limits=httpx.Limits(max_keepalive_connections=0))
        for n in range(30):
            tell(fresh, "acme", "w", n).raise_for_status()
            assert fresh.post("/query", headers={"X-Tenant-ID": "acme"},
                              json={"predicate": "p", "args": ["w", n]}).json()["count"] == 1
        os.kill(workers[0], signal.SIGKILL)
        for n in range(30, 40):  # the survivor serves meanwhile
            tell(fresh, "acme", "w", n).raise_for_status()
        restarted: list[int] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            restarted = _workers(main, server.data_dir.resolve())
            if len(restarted) == 2 and workers[0] not in restarted:
                break
            time.sleep(0.2)
        assert len(restarted) == 2 and workers[0] not in restarted, restarted
        expected = [row[1] for row in facts(server, "acme")]
        assert expected == list(range(40))
        time.sleep(2)  # the new worker ready; answers through both are the same bytes
        answers = {
            fresh.post("/query", headers={"X-Tenant-ID": "acme"},
                       json={"predicate": "p", "args": ["?a", "?b"]}).content
            for _ in range(20)
        }
        assert len(answers) == 1
    finally:
        try:
            server.stop()
        except subprocess.TimeoutExpired:  # never leave a manager or a worker behind
            for pid in (*_workers(main, server.data_dir.resolve()), main):
                os.kill(pid, signal.SIGKILL)
            raise
