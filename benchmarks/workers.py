"""Durable ``POST /tell`` with 1 and 2 worker processes against a no-op Sanic handler
with 1 and 2 workers, in the same run (issue 16).

Issue 16's target: ``nocturnus serve --workers 2`` on a 2-core machine reaches at least
1.0 x the requests per second of a single-worker no-op Sanic handler at 32 clients. Four
servers run at once; the load generator (``wrk``, as in ``write_throughput.py``) takes
them in turn for several rounds so drifting background load hits each, and the median
ratios to the single-worker no-op are printed. Every Nocturnus worker answers a tell
only after its group commit is durable, and decides on the tenant caught up with the
other worker's appends. The tells go to ``--tenants`` tenants in turn (default 32: many
tenants, few of them written by both workers at the same moment); ``--tenants 1`` is
the worst case, where nearly every decision of one worker is refused because the other
wrote the tenant meanwhile, and decided again (the conflict and retry counts of one
worker are printed from its ``/metrics``).

    python benchmarks/workers.py [--seconds 5] [--rounds 3] [--connections 32] [--tenants 32]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from write_throughput import ensure_wrk, free_port, wait_ready

TELL_LUA = textwrap.dedent(
    """
    -- A new fact per request (a repeated one is answered without a write), the tenants
    -- taken in turn.
    local threads = 0
    function setup(thread)
      threads = threads + 1
      thread:set("id", threads)
    end
    local counter = 0
    request = function()
      counter = counter + 1
      local body = string.format('{"predicate":"edge","args":["RUN-%s-%d",%d]}',
                                 id, counter, counter)
      local headers = {["Content-Type"] = "application/json",
                       ["X-Tenant-ID"] = "bench" .. (counter % TENANTS)}
      return wrk.format("POST", "/tell", headers, body)
    end
    """
)


def run_wrk(
    wrk: str, url: str, script: Path, seconds: int, connections: int
) -> tuple[float, int]:
    """Requests per second answered 2xx, and how many were not (503 WRITE_CONTENTION:
    a write refused every time it was decided again; counted, not hidden)."""
    out = subprocess.run(
        [wrk, "-t2", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url + "/"],
        capture_output=True, text=True, check=True,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in ([\d.]+)s", out)
    assert match and total, out
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    failed = int(errors.group(1)) if errors else 0
    ok = (int(total.group(1)) - failed) / float(total.group(2))
    return ok, failed

NOOP_SCRIPT = textwrap.dedent(
    """
    import sys
    from sanic import Sanic
    from sanic.response import json

    app = Sanic("noop")
    app.config.MOTD = False

    @app.post("/tell")
    async def tell(request):
        return json({"stored": True})

    @app.get("/health/ready")
    async def ready(request):
        return json({"status": "ok"})

    if __name__ == "__main__":
        workers = int(sys.argv[2])
        app.run(host="127.0.0.1", port=int(sys.argv[1]), workers=workers,
                single_process=workers == 1, access_log=False, debug=False)
    """
)
"""The issue's peer as a script file: Sanic's workers re-import it (spawn)."""


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:  # the child keeps its own descriptor
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)


def contention(url: str) -> str:
    """The write conflicts and retries a server's /metrics reports (server-wide)."""
    text = httpx.get(url + "/metrics", timeout=10).text
    found = {}
    for name in ("write_conflicts_total", "write_retries_total", "catch_ups_total",
                 "caught_up_events_total", "events_appended_total", "group_commits_total"):
        values = re.findall(rf"^nocturnus_{name}(?:{{[^}}]*}})? ([\d.e+]+)$", text, re.MULTILINE)
        found[name] = int(sum(float(v) for v in values))
    return ", ".join(f"{k} {v}" for k, v in found.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--tenants", type=int, default=32)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="nocturnus-workers-"))
    script = work / "noop.py"
    script.write_text(NOOP_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NOCTURNUS_MASTER_KEY": os.urandom(32).hex()}
    servers: dict[str, tuple[str, subprocess.Popen[bytes]]] = {}
    try:
        for workers in (1, 2):
            port = free_port()
            servers[f"no-op x{workers}"] = (
                f"http://127.0.0.1:{port}",
                start([sys.executable, str(script), str(port), str(workers)], env,
                      work / f"noop{workers}.log"),
            )
            port = free_port()
            servers[f"Nocturnus x{workers}"] = (
                f"http://127.0.0.1:{port}",
                start([sys.executable, "-m", "nocturnus", "serve", "--port", str(port),
                       "--workers", str(workers), "--data-dir", str(work / f"data{workers}")],
                      env, work / f"ours{workers}.log"),
            )
        for url, process in servers.values():
            wait_ready(url, process)
        wrk = ensure_wrk()
        if wrk is None:
            raise SystemExit("wrk is needed: apt-get install -y wrk")
        print(
            f"load generator: wrk (2 threads); {args.connections} connections, "
            f"{args.tenants} tenants, {args.seconds} s per run, {args.rounds} rounds, "
            f"{os.cpu_count()} CPUs"
        )

        def measure(url: str) -> tuple[float, int]:
            lua = TELL_LUA.replace("RUN", uuid.uuid4().hex[:12])
            script = work / "tell.lua"
            script.write_text(lua.replace("TENANTS", str(args.tenants)))
            return run_wrk(wrk, url, script, args.seconds, args.connections)

        for name, (url, _) in servers.items():  # warm-up: tenant created, caches filled
            if name.startswith("Nocturnus"):
                measure(url)
        figures: dict[str, list[float]] = {name: [] for name in servers}
        failures = dict.fromkeys(servers, 0)
        for round_ in range(1, args.rounds + 1):
            measured = {name: measure(url) for name, (url, _) in servers.items()}
            base = measured["no-op x1"][0]
            for name, (value, failed) in measured.items():
                figures[name].append(value / base)
                failures[name] += failed
            print(f"round {round_}: " + " | ".join(
                f"{name} {value:8,.0f} req/s ({value / base:5.2f})"
                for name, (value, _) in measured.items()
            ))
        print("median ratio to the single-worker no-op: " + ", ".join(
            f"{name} {statistics.median(values):.2f}" for name, values in figures.items()
        ))
        print("answers other than 2xx: " + ", ".join(f"{k} {v}" for k, v in failures.items()))
        print("Nocturnus x2, one worker's /metrics: " + contention(servers["Nocturnus x2"][0]))
    finally:
        for _, process in servers.values():
            process.send_signal(signal.SIGTERM)
        for _, process in servers.values():
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()


if __name__ == "__main__":
    main()
