"""Argon2 key checks are bounded per client and count against the lockout (issue 14, 10).

The reproduction: 20 concurrent requests with wrong keys carrying a real key's public
prefix cost 3.9 s of CPU and 458 MB, and all of them passed the lockout check, because
a check in flight did not count until it had failed.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_KEY
from tests.server import Server

MAX_FAILURES = 4


def start(tmp_path: Path, **env: str) -> Server:
    base = {
        "NOCTURNUS_AUTH": "on",
        "NOCTURNUS_ADMIN_KEY": ADMIN_KEY,
        "NOCTURNUS_AUTH_LOCKOUT_S": "300",
        "NOCTURNUS_TRUSTED_PROXIES": "127.0.0.1",
        "NOCTURNUS_RATE_LIMIT_ADMIN_RPM": "0",
        "NOCTURNUS_RATE_LIMIT_READER_RPM": "0",
    }
    return Server(tmp_path / "data", env={**base, **env}).start()


@pytest.fixture
def lockout_server(tmp_path: Path) -> Iterator[Server]:
    server = start(tmp_path, NOCTURNUS_AUTH_FAILURES_PER_MINUTE=str(MAX_FAILURES))
    yield server
    server.stop()


@pytest.fixture
def unlocked_server(tmp_path: Path) -> Iterator[Server]:
    server = start(tmp_path, NOCTURNUS_AUTH_FAILURES_PER_MINUTE="0")
    yield server
    server.stop()


def mint(server: Server) -> str:
    made = server.request("POST", "/auth/keys", headers={"X-API-Key": ADMIN_KEY},
                          json={"role": "reader"})
    assert made.status_code == 201, made.text
    key: str = made.json()["key"]
    return key


def forged(key: str) -> str:
    """A wrong key with ``key``'s public prefix: it costs a real argon2 check."""
    prefix = key[:12]
    tail = secrets.token_urlsafe(48)[: len(key) - len(prefix)]
    return prefix + tail


def burst(server: Server, keys: list[str], client: str) -> list[httpx.Response]:
    """Send one request per key at the same moment from ``client``."""
    gate = threading.Barrier(len(keys))
    answers: list[httpx.Response | None] = [None] * len(keys)

    def send(i: int) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            gate.wait()
            answers[i] = http.get("/auth/whoami", headers={
                "X-API-Key": keys[i], "X-Forwarded-For": client})

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(keys))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert all(a is not None for a in answers)
    return [a for a in answers if a is not None]


def test_concurrent_guesses_cannot_pass_the_lockout_together(lockout_server: Server) -> None:
    real = mint(lockout_server)
    answers = burst(lockout_server, [forged(real) for _ in range(20)], "203.0.113.9")
    statuses = [a.status_code for a in answers]
    # Each 401 is an argon2 check that ran and failed: no more than the lockout allows.
    assert statuses.count(401) <= MAX_FAILURES, statuses
    assert set(statuses) <= {401, 429}, statuses
    # Guess on, one at a time: the lockout comes after exactly MAX_FAILURES checks.
    checked = statuses.count(401)
    for _ in range(MAX_FAILURES):
        if checked >= MAX_FAILURES:
            break
        answer = lockout_server.request("GET", "/auth/whoami", headers={
            "X-API-Key": forged(real), "X-Forwarded-For": "203.0.113.9"})
        assert answer.status_code == 401
        checked += 1
    locked = lockout_server.request("GET", "/auth/whoami", headers={
        "X-API-Key": real, "X-Forwarded-For": "203.0.113.9"})
    assert locked.status_code == 429 and "retry in" in locked.json()["message"]
    other = lockout_server.request("GET", "/auth/whoami", headers={
        "X-API-Key": real, "X-Forwarded-For": "198.51.100.3"})
    assert other.status_code == 200


def test_checks_in_flight_are_bounded_per_client(unlocked_server: Server) -> None:
    real = mint(unlocked_server)
    answers = burst(unlocked_server, [forged(real) for _ in range(20)], "203.0.113.10")
    refused = [a for a in answers if a.status_code == 429]
    assert refused, [a.status_code for a in answers]
    assert all("in flight" in a.json()["message"] for a in refused)
    assert all(int(a.headers["Retry-After"]) >= 1 for a in refused)


def test_one_valid_key_used_concurrently_for_the_first_time_is_checked_once(
    unlocked_server: Server,
) -> None:
    """Requests presenting the same new key join one check: none is refused."""
    real = mint(unlocked_server)
    answers = burst(unlocked_server, [real] * 12, "203.0.113.11")
    assert [a.status_code for a in answers] == [200] * 12
