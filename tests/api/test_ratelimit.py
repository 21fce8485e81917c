"""Rate limits: a lockout per client address after failed authentications, and a token
bucket per key by role, both answering 429 in the envelope with Retry-After (issue 7)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from nocturnus.api.ratelimit import FailureLimiter, TokenBuckets
from tests.conftest import ADMIN_KEY
from tests.server import Server


def test_token_bucket_allows_a_minute_of_burst_then_refills() -> None:
    buckets = TokenBuckets({"reader": 60, "admin": 0})
    quotas = [buckets.take("k", "reader", 100.0) for _ in range(61)]
    assert all(q is not None and q.allowed for q in quotas[:60])
    assert quotas[0].limit == 60 and quotas[0].remaining == 59  # type: ignore[union-attr]
    last = quotas[60]
    assert last is not None and not last.allowed and last.retry_after_s == 1 and last.remaining == 0
    assert buckets.take("k", "reader", 101.0).allowed  # type: ignore[union-attr]
    assert buckets.take("other", "reader", 101.0).remaining == 59  # type: ignore[union-attr]
    assert buckets.take("k", "admin", 101.0) is None  # 0 = unlimited
    buckets.forget("k")
    assert buckets.take("k", "reader", 101.0).remaining == 59  # type: ignore[union-attr]


def test_failure_limiter_locks_an_address_out_for_a_while() -> None:
    limiter = FailureLimiter(max_failures=3, lockout_s=30)
    assert [limiter.fail("a", 0.0) for _ in range(3)] == [False, False, True]
    assert limiter.locked_for("a", 1.0) == 29
    assert limiter.locked_for("b", 1.0) == 0
    assert limiter.locked_for("a", 30.0) == 0
    assert not limiter.fail("a", 31.0)  # a fresh window
    assert not FailureLimiter(max_failures=0).fail("a", 0.0)  # 0 = never locks


def test_checks_in_flight_are_bounded_and_count_against_the_lockout() -> None:
    """Issue 14: concurrent guesses must not all pass the lockout check together."""
    limiter = FailureLimiter(max_failures=2, lockout_s=30, max_in_flight=2)
    assert limiter.begin("a", 0.0) == 0 and limiter.begin("a", 0.0) == 0
    assert limiter.begin("a", 0.0) == 1  # two in flight already
    assert limiter.begin("b", 0.0) == 0  # another address is not affected
    limiter.end("a")
    limiter.fail("a", 0.0)
    # one failed, one in flight: one more could not fail without passing the lockout
    assert limiter.begin("a", 0.0) == 1
    limiter.end("a")
    assert limiter.begin("a", 0.0) == 0
    unbounded = FailureLimiter(max_failures=0, max_in_flight=0)
    assert all(unbounded.begin("a", 0.0) == 0 for _ in range(50))


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {
        "NOCTURNUS_AUTH": "on",
        "NOCTURNUS_ADMIN_KEY": ADMIN_KEY,
        "NOCTURNUS_AUTH_FAILURES_PER_MINUTE": "3",
        "NOCTURNUS_AUTH_LOCKOUT_S": "300",
        "NOCTURNUS_TRUSTED_PROXIES": "127.0.0.1",
        "NOCTURNUS_RATE_LIMIT_READER_RPM": "5",
        "NOCTURNUS_RATE_LIMIT_ADMIN_RPM": "0",
    }
    srv = Server(Path(tmp_path_factory.mktemp("limited")) / "data", env=env).start()
    yield srv
    srv.stop()


def test_failed_authentications_lock_the_address_out(limited: Server) -> None:
    attacker = {"X-Forwarded-For": "203.0.113.5"}
    for _ in range(3):
        bad = limited.request("GET", "/auth/whoami", headers={**attacker, "X-API-Key": "nct_" + "x" * 43})
        assert bad.status_code == 401
    # even a valid key is refused from the locked address, without being checked
    locked = limited.request("GET", "/auth/whoami", headers={**attacker, "X-API-Key": ADMIN_KEY})
    assert locked.status_code == 429
    assert locked.json()["code"] == "RATE_LIMITED"
    assert 0 < int(locked.headers["Retry-After"]) <= 300
    # the nearest untrusted hop counts: what the client itself put in front is ignored
    spoofed = limited.request("GET", "/auth/whoami",
                              headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.5", "X-API-Key": ADMIN_KEY})
    assert spoofed.status_code == 429
    # other addresses are not affected; public routes stay open
    other = limited.request("GET", "/auth/whoami", headers={"X-Forwarded-For": "198.51.100.7", "X-API-Key": ADMIN_KEY})
    assert other.status_code == 200
    assert limited.request("GET", "/health/live", headers=attacker).status_code == 200
    trail = limited.request("GET", "/admin/audit", headers={"X-API-Key": ADMIN_KEY}).json()["events"]
    actions = [(e["action"], e["actor"]["client"]) for e in trail]
    assert ("auth_failed", "203.0.113.5") in actions and ("auth_lockout", "203.0.113.5") in actions
    assert sum(1 for a in actions if a == ("auth_failed", "203.0.113.5")) == 1  # sampled
    assert "x" * 43 not in str(trail) and "x" * 43 not in limited.output()


def test_requests_per_key_are_limited_by_role(limited: Server) -> None:
    created = limited.request("POST", "/auth/keys", headers={"X-API-Key": ADMIN_KEY}, json={"role": "reader"})
    key = created.json()["key"]
    first = limited.request("GET", "/auth/whoami", headers={"X-API-Key": key})
    assert first.status_code == 200
    assert first.headers["X-RateLimit-Limit"] == "5"
    assert first.headers["X-RateLimit-Remaining"] == "4"
    assert int(first.headers["X-RateLimit-Reset"]) >= 1
    statuses = [limited.request("GET", "/auth/whoami", headers={"X-API-Key": key}) for _ in range(10)]
    refused = [r for r in statuses if r.status_code == 429]
    assert refused, [r.status_code for r in statuses]
    assert refused[0].json()["code"] == "RATE_LIMITED"
    assert int(refused[0].headers["Retry-After"]) >= 1
    assert refused[0].headers["X-RateLimit-Remaining"] == "0"
    # an unlimited role carries no rate-limit headers; a different key has its own bucket
    unlimited = limited.request("GET", "/auth/whoami", headers={"X-API-Key": ADMIN_KEY})
    assert unlimited.status_code == 200 and "X-RateLimit-Limit" not in unlimited.headers
