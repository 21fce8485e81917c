"""Per-tenant fairness: nine small tenants' latency with and without a heavy tenant.

Issue 13, item 5: one tenant issuing heavy questions must not stall the others; the
small tenants' p99 should stay within 2x of their p99 with no heavy tenant.

Run with ``python benchmarks/fairness.py`` (``--seconds`` per phase, default 20). It
starts a real ``nocturnus serve`` and loads ten tenants over HTTP. Each of the nine
small tenants has one client (a thread with its own keep-alive connection) that, in
a loop, tells a new fact, then asks a bound question over a recursive rule (a few
answers), pausing ``--think-ms`` after each request; every request is timed. A tenth
client polls ``/health/live`` the same way.

- Phase *alone*: the small tenants only.
- Phase *heavy*: the same, while the heavy tenant asks, back to back, the issue's
  kind of question: ``h(?a) :- p(?a), p(?b), p(?c), p(?d)`` over 150 facts, 506 M
  bindings for 150 rows, which only its timeout (``NOCTURNUS_QUERY_TIMEOUT_MS``,
  ``--heavy-timeout-ms``) ends: a worker busy for its whole length, every time.

The two phases alternate ``--rounds`` times (``--seconds`` in all per phase), so a
swing of the shared machine's load falls on both. It prints, per phase, the small
tenants' requests, p50 and p99 (and the heavy tenant's questions), then
p99(heavy) / p99(alone). Wall-clock latency on a shared machine swings; read the
ratio, and repeat.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SMALL_TENANTS = 9
CHAIN = 30
HEAVY_FACTS = 150


class Connection:
    """A keep-alive HTTP/1.1 connection sending JSON as one tenant."""

    def __init__(self, port: int, tenant: str | None = None) -> None:
        self.http = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.headers = {"Content-Type": "application/json"}
        if tenant is not None:
            self.headers["X-Tenant-ID"] = tenant

    def send(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        data = None if body is None else orjson.dumps(body)
        self.http.request(method, path, body=data, headers=self.headers)
        response = self.http.getresponse()
        return response.status, response.read()


@dataclass
class Timings:
    """Seconds per request of one kind of client, in one phase."""

    seconds: list[float] = field(default_factory=list)
    errors: int = 0

    def add(self, started: float, status: int, ok: tuple[int, ...] = (200,)) -> None:
        self.seconds.append(time.perf_counter() - started)
        if status not in ok:
            self.errors += 1


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def load(port: int) -> None:
    """Nine small tenants (a chain and a reachability rule) and the heavy one."""
    rule = {
        "head": {"predicate": "reach", "args": ["?x", "?z"]},
        "body": [
            {"predicate": "edge", "args": ["?x", "?y"]},
            {"predicate": "reach", "args": ["?y", "?z"]},
        ],
    }
    exit_rule = {
        "head": {"predicate": "reach", "args": ["?x", "?y"]},
        "body": [{"predicate": "edge", "args": ["?x", "?y"]}],
    }
    for n in range(SMALL_TENANTS):
        client = Connection(port, f"small{n}")
        edges = [{"predicate": "edge", "args": [f"n{i}", f"n{i + 1}"]} for i in range(CHAIN)]
        assert client.send("POST", "/assert/facts", {"facts": edges})[0] == 200
        for taught in (exit_rule, rule):
            assert client.send("POST", "/teach", taught)[0] == 200
    heavy = Connection(port, "heavy")
    facts = [{"predicate": "p", "args": [f"n{i}"]} for i in range(HEAVY_FACTS)]
    assert heavy.send("POST", "/assert/facts", {"facts": facts})[0] == 200
    body = [{"predicate": "p", "args": [v]} for v in ("?a", "?b", "?c", "?d")]
    taught = {"head": {"predicate": "h", "args": ["?a"]}, "body": body}
    assert heavy.send("POST", "/teach", taught)[0] == 200


def small_client(port: int, n: int, think_s: float, stop: threading.Event, out: Timings) -> None:
    client = Connection(port, f"small{n}")
    told = 0
    while not stop.is_set():
        started = time.perf_counter()
        status, _ = client.send("POST", "/tell", {"predicate": "note", "args": [f"x{told}"]})
        out.add(started, status)
        told += 1
        time.sleep(think_s)
        start = f"n{(told * 7) % (CHAIN - 3)}"
        started = time.perf_counter()
        status, _ = client.send("POST", "/ask", {"predicate": "reach", "args": [start, "?y"], "limit": 3})
        out.add(started, status)
        time.sleep(think_s)


def live_client(port: int, think_s: float, stop: threading.Event, out: Timings) -> None:
    client = Connection(port)
    while not stop.is_set():
        started = time.perf_counter()
        status, _ = client.send("GET", "/health/live")
        out.add(started, status)
        time.sleep(think_s)


def heavy_client(port: int, stop: threading.Event, out: Timings) -> None:
    client = Connection(port, "heavy")
    while not stop.is_set():
        started = time.perf_counter()
        status, body = client.send("POST", "/ask", {"predicate": "h", "args": ["?a"]})
        at_timeout = status == 422 and orjson.loads(body)["details"]["limit"] == "time"
        out.add(started, 422 if at_timeout else status, ok=(422,))  # by design


def phase(port: int, seconds: float, think_s: float, heavy: bool) -> dict[str, Timings]:
    """Run the clients for ``seconds``; their timings by kind."""
    found = {"small": Timings(), "live": Timings(), "heavy": Timings()}
    stop = threading.Event()
    small = Timings()
    threads: list[threading.Thread] = []
    per_client = [Timings() for _ in range(SMALL_TENANTS)]
    jobs: list[Callable[[], None]] = [
        lambda n=n: small_client(port, n, think_s, stop, per_client[n])  # type: ignore[misc]
        for n in range(SMALL_TENANTS)
    ]
    jobs.append(lambda: live_client(port, think_s, stop, found["live"]))
    if heavy:
        jobs.append(lambda: heavy_client(port, stop, found["heavy"]))
    for job in jobs:
        threads.append(threading.Thread(target=job, daemon=True))
        threads[-1].start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(120)
    for timings in per_client:
        small.seconds += timings.seconds
        small.errors += timings.errors
    found["small"] = small
    return found


def merged(phases: list[dict[str, Timings]]) -> dict[str, Timings]:
    """The timings of several runs of one phase, kind by kind."""
    found: dict[str, Timings] = {}
    for timings in phases:
        for kind, part in timings.items():
            whole = found.setdefault(kind, Timings())
            whole.seconds += part.seconds
            whole.errors += part.errors
    return found


def report(name: str, found: dict[str, Timings]) -> float:
    small = found["small"].seconds
    live = found["live"].seconds
    p99 = percentile(small, 0.99)
    line = (
        f"{name:>6}: small {len(small):6d} requests, p50 {statistics.median(small) * 1000:7.1f} ms, "
        f"p99 {p99 * 1000:7.1f} ms, errors {found['small'].errors}; "
        f"/health/live p50 {statistics.median(live) * 1000:6.1f} ms, "
        f"p99 {percentile(live, 0.99) * 1000:6.1f} ms"
    )
    heavy = found["heavy"]
    if heavy.seconds:
        line += (
            f"; heavy {len(heavy.seconds)} questions of "
            f"{statistics.median(heavy.seconds):.1f} s, {heavy.errors} not ended by the timeout"
        )
    print(line, flush=True)
    return p99


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20, help="length of each phase")
    parser.add_argument("--rounds", type=int, default=4, help="alternations of the phases")
    parser.add_argument("--think-ms", type=float, default=10, help="pause after each request")
    parser.add_argument("--heavy-timeout-ms", type=int, default=3000)
    options = parser.parse_args()
    from tests.server import Server

    env = {
        "PYTHONPATH": str(ROOT),
        "NOCTURNUS_QUERY_TIMEOUT_MS": str(options.heavy_timeout_ms),
    }
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp) / "data", env=env).start()
        try:
            load(server.port)
            think_s = options.think_ms / 1000
            phase(server.port, min(options.seconds, 3), think_s, heavy=False)  # warm-up
            seconds = options.seconds / options.rounds
            runs: dict[bool, list[dict[str, Timings]]] = {False: [], True: []}
            for _ in range(options.rounds):
                for with_heavy in (False, True):
                    runs[with_heavy].append(phase(server.port, seconds, think_s, with_heavy))
            alone = report("alone", merged(runs[False]))
            heavy = report("heavy", merged(runs[True]))
        finally:
            server.stop()
    ratio = heavy / alone
    print(f"p99 with the heavy tenant / p99 without: {ratio:.2f} (target <= 2)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
