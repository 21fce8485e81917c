"""Rate limits and lockouts hold across processes through the shared state (issue 16).

The limiters of two processes are driven directly on one real ``shared.sqlite``, then
two real servers (two processes on one SQLite data dir, two nodes on one PostgreSQL
database) are checked end to end: a key limited to R requests a minute gets about R
through both together (each alone would let R through), a lockout triggered through one
refuses on the other, and a shared state that fails leaves each process its own limits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from nocturnus.api.ratelimit import FailureLimiter, TokenBuckets
from nocturnus.api.sharedlimits import WINDOW_S, SharedLimits, estimate_tokens
from nocturnus.service.shared import Shared
from nocturnus.store.shared.sqlite import SqliteShared
from tests.conftest import ADMIN_KEY
from tests.nodes import running, two_servers
from tests.server import Server

LIMIT = 12
MAX_FAILURES = 3
RATE = 30
"""The servers' reader limit: what one process admits during a round trip to the shared
state (a millisecond or more on PostgreSQL, as long as a request here) stays small
beside it."""


class Process:
    """What one process holds: its buckets, its failures, and its SharedLimits."""

    def __init__(self, shared: Shared) -> None:
        self.buckets = TokenBuckets({"reader": LIMIT})
        self.failures = FailureLimiter(max_failures=MAX_FAILURES, lockout_s=300)
        self.limits = SharedLimits(self.failures)
        self.limits.track("req", self.buckets)
        self.limits.attach(shared)

    def take(self, n: int) -> int:
        """Take ``n`` tokens of key k; how many were allowed."""
        quotas = [self.buckets.take("k", "reader", time.monotonic()) for _ in range(n)]
        return sum(1 for q in quotas if q is not None and q.allowed)


@pytest.fixture
def two(tmp_path: Path) -> Iterator[tuple[Process, Process]]:
    shares = [Shared(SqliteShared(tmp_path)) for _ in range(2)]
    yield Process(shares[0]), Process(shares[1])
    for shared in shares:
        shared.close()


def test_estimate_tokens_of_a_bucket_from_its_window_counters() -> None:
    now = 1000 * WINDOW_S + 1.0
    current = int(now // WINDOW_S)
    assert estimate_tokens({}, 60, now) == 60
    assert estimate_tokens({current: 60}, 60, now) == 0  # all spent just now
    # spent a window ago: a token a second came back since its end
    assert estimate_tokens({current - 1: 60}, 60, now) == pytest.approx(1.0)
    # spent more than a minute ago: full again
    assert estimate_tokens({current - 13: 60}, 60, now) == 60


def test_two_processes_spend_from_one_bucket(two: tuple[Process, Process]) -> None:
    a, b = two
    assert a.take(8) == 8
    asyncio.run(a.limits.sync())
    # B has not used the key yet: its first publication starts it from the counters
    assert b.take(1) == 1
    asyncio.run(b.limits.sync())
    assert b.take(LIMIT) <= LIMIT - 9 + 1
    asyncio.run(b.limits.sync())
    # A hears of what B spent when it publishes next (at once after a tenth of the
    # limit, or SYNC_INTERVAL_S): B's spending is taken from A's bucket too
    assert a.take(1) == 1
    asyncio.run(a.limits.sync())
    assert a.take(LIMIT) == 0


def test_one_process_alone_admits_exactly_what_it_did_alone(tmp_path: Path) -> None:
    alone = Process(Shared(SqliteShared(tmp_path)))
    plain = TokenBuckets({"reader": LIMIT})
    for _ in range(3):
        now = time.monotonic()
        got = [alone.buckets.take("k", "reader", now) for _ in range(5)]
        want = [plain.take("k", "reader", now) for _ in range(5)]
        assert [q.allowed for q in got if q] == [q.allowed for q in want if q]
        asyncio.run(alone.limits.sync())


def test_a_lockout_decided_by_one_process_is_taken_up_by_the_other(
    two: tuple[Process, Process],
) -> None:
    a, b = two
    now = time.monotonic()
    outcomes = [asyncio.run(a.limits.fail("203.0.113.5", now)) for _ in range(MAX_FAILURES)]
    assert outcomes == [False] * (MAX_FAILURES - 1) + [True]
    assert b.failures.locked_for("203.0.113.5", now) == 0
    asyncio.run(b.limits.sync())
    assert 290 <= b.failures.locked_for("203.0.113.5", time.monotonic()) <= 300
    assert b.failures.locked_for("198.51.100.1", time.monotonic()) == 0


def test_failures_counted_by_every_process_make_one_lockout(
    two: tuple[Process, Process],
) -> None:
    a, b = two
    now = time.monotonic()
    assert not asyncio.run(a.limits.fail("203.0.113.6", now))
    assert not asyncio.run(a.limits.fail("203.0.113.6", now))
    assert asyncio.run(b.limits.fail("203.0.113.6", now))  # the third, on B
    assert b.failures.locked_for("203.0.113.6", now) > 0
    asyncio.run(a.limits.sync())
    assert a.failures.locked_for("203.0.113.6", now) > 0


def test_a_failing_shared_state_leaves_local_limits_and_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the data dir should be")
    process = Process(Shared(SqliteShared(blocked)))
    caplog.set_level(logging.WARNING, logger="nocturnus.security")
    now = time.monotonic()
    assert process.take(LIMIT + 3) == LIMIT  # the local bucket decides
    asyncio.run(process.limits.sync())
    locked = [asyncio.run(process.limits.fail("203.0.113.7", now)) for _ in range(MAX_FAILURES)]
    asyncio.run(process.limits.sync())
    assert locked == [False] * (MAX_FAILURES - 1) + [True]  # the local lockout holds
    warnings = [r.getMessage() for r in caplog.records if "hold per process" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert str(blocked) in warnings[0]


# -- two real servers --------------------------------------------------------------------

LIMITED = {
    "NOCTURNUS_AUTH": "on",
    "NOCTURNUS_ADMIN_KEY": ADMIN_KEY,
    "NOCTURNUS_AUTH_FAILURES_PER_MINUTE": str(MAX_FAILURES),
    "NOCTURNUS_AUTH_LOCKOUT_S": "300",
    "NOCTURNUS_TRUSTED_PROXIES": "127.0.0.1",
    "NOCTURNUS_RATE_LIMIT_READER_RPM": str(RATE),
    "NOCTURNUS_RATE_LIMIT_ADMIN_RPM": "0",
}


@pytest.fixture(params=["sqlite", "postgresql"])
def nodes(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    """Two running servers with limits on one store."""
    yield from two_servers(request.param, tmp_path, LIMITED)


def reader_key(server: Server) -> str:
    made = server.request("POST", "/auth/keys", headers={"X-API-Key": ADMIN_KEY},
                          json={"role": "reader"})
    assert made.status_code == 201, made.text
    key: str = made.json()["key"]
    return key


def test_a_key_gets_about_its_limit_through_two_processes_together(
    nodes: tuple[Server, Server],
) -> None:
    a, b = nodes
    key = reader_key(a)
    answers = [
        server.request("GET", "/auth/whoami", headers={"X-API-Key": key})
        for _ in range(2 * RATE) for server in (a, b)
    ]
    admitted = [r for r in answers if r.status_code == 200]
    # Each process alone would admit RATE (2 x RATE together). Together they admit RATE
    # plus what each let through before hearing of the other's spending (a round trip).
    assert RATE - 3 <= len(admitted) <= RATE * 3 // 2, [r.status_code for r in answers]
    refused = [r for r in answers if r.status_code == 429]
    assert len(refused) == len(answers) - len(admitted)
    assert refused[-1].json()["code"] == "RATE_LIMITED"
    assert int(refused[-1].headers["Retry-After"]) >= 1
    assert refused[-1].headers["X-RateLimit-Remaining"] == "0"


def test_a_lockout_triggered_through_one_process_refuses_on_the_other(
    nodes: tuple[Server, Server],
) -> None:
    a, b = nodes
    attacker = {"X-Forwarded-For": "203.0.113.5"}
    for _ in range(MAX_FAILURES):
        bad = a.request("GET", "/auth/whoami", headers={**attacker, "X-API-Key": "nct_" + "x" * 43})
        assert bad.status_code == 401
    assert a.request("GET", "/auth/whoami", headers={**attacker, "X-API-Key": ADMIN_KEY}).status_code == 429
    # B takes the lockout up within its next round of reading (a fifth of a second)
    deadline = time.monotonic() + 20
    status = 0
    while time.monotonic() < deadline:
        answer = b.request("GET", "/auth/whoami", headers={**attacker, "X-API-Key": ADMIN_KEY})
        status = answer.status_code
        if status == 429:
            break
        assert status == 200
        time.sleep(0.05)
    assert status == 429
    assert "Too many failed authentications" in answer.json()["message"]
    assert 0 < int(answer.headers["Retry-After"]) <= 300
    other = b.request("GET", "/auth/whoami", headers={"X-Forwarded-For": "198.51.100.7", "X-API-Key": ADMIN_KEY})
    assert other.status_code == 200


def test_a_lost_shared_table_leaves_each_node_its_own_limits(tmp_path: Path) -> None:
    """PostgreSQL: the shared state's table dropped behind the nodes' backs (an
    operator's mistake, a failed-over database without it): requests go on, each node
    limits on its own, and each says so once in its log."""
    from tests.pg import fresh_database

    with fresh_database() as url:
        env = {**LIMITED, "NOCTURNUS_STORE": url}
        pair = (Server(tmp_path / "a", env=env), Server(tmp_path / "b", env=env))
        for a, b in running(pair):
            key = reader_key(a)
            assert b.request("GET", "/auth/whoami", headers={"X-API-Key": key}).status_code == 200
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("DROP TABLE nocturnus.shared_state")
            with httpx.Client(base_url=b.url, timeout=30) as http:
                statuses = [
                    http.get("/auth/whoami", headers={"X-API-Key": key}).status_code
                    for _ in range(RATE + 3)
                ]
            # B's own bucket decides: what it had left (A spent nothing), then 429
            assert statuses.count(200) >= RATE - 2 and set(statuses) == {200, 429}, statuses
            for _ in range(MAX_FAILURES):
                bad = b.request("GET", "/auth/whoami", headers={"X-API-Key": "nct_" + "y" * 43})
                assert bad.status_code == 401
            assert b.request("GET", "/auth/whoami", headers={"X-API-Key": ADMIN_KEY}).status_code == 429
            assert b.output().count("rate limits and lockouts hold per process") == 1
