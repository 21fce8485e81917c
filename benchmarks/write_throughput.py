"""Durable ``POST /tell`` throughput vs a no-op Sanic JSON handler, in the same run.

Issue 3 / DESIGN.md target: at 32 concurrent clients, Nocturnus (every answer after its
group-committed batch is fsync'd) reaches >= 70 % of the requests per second of a Sanic
app whose ``POST /tell`` handler does nothing but answer JSON. A third server, the
"durable floor" (``write_peers.FLOOR_APP``: parse, encrypt, chain, group commit, no
other feature), shows what Python on Sanic allows for a durable write at all. All run at
the same time on this machine; the load generator alternates between them for several
rounds so drifting background load hits each, and the median ratios are printed.

Load generator: ``wrk`` with a Lua script (installed with ``apt-get install -y wrk``
when missing and possible), else a built-in asyncio + httpx client (slower: it spends
CPU the servers then lack, so its ratio is only indicative).

    python benchmarks/write_throughput.py [--seconds 5] [--rounds 3] [--connections 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from write_peers import FLOOR_APP, NOOP_APP

TELL_LUA = textwrap.dedent(
    """
    -- Every request tells a new fact: a run prefix (unique per run), the wrk thread's
    -- id and a counter. Repeating a fact would be answered "Already known" without a
    -- write, which is not what this measures.
    local threads = 0
    function setup(thread)
      threads = threads + 1
      thread:set("id", threads)
    end
    wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/json"
    wrk.headers["X-Tenant-ID"] = "bench"
    local counter = 0
    request = function()
      counter = counter + 1
      local body = string.format('{"predicate":"edge","args":["RUN-%s-%d",%d]}',
                                 id, counter, counter)
      return wrk.format(nil, "/tell", nil, body)
    end
    """
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(
    url: str, process: subprocess.Popen[bytes], timeout_s: float = 60
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server at {url} exited early")
        try:
            if httpx.get(url + "/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"server at {url} did not become ready")


def ensure_wrk() -> str | None:
    found = shutil.which("wrk")
    if found is None and shutil.which("apt-get") is not None and os.geteuid() == 0:
        subprocess.run(
            ["apt-get", "install", "-y", "wrk"], capture_output=True, check=False
        )
        found = shutil.which("wrk")
    return found


def run_wrk(wrk: str, url: str, script: Path, seconds: int, connections: int) -> float:
    script.write_text(TELL_LUA.replace("RUN", uuid.uuid4().hex[:12]))
    out = subprocess.run(
        [wrk, "-t2", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url + "/"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"{url}: {errors.group(1)} failed requests:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert match, out
    return float(match.group(1))


def run_httpx(url: str, seconds: int, connections: int) -> float:
    async def main() -> float:
        limits = httpx.Limits(max_connections=connections)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
            done = 0
            deadline = time.monotonic() + seconds

            async def worker(i: int) -> None:
                nonlocal done
                n = 0
                while time.monotonic() < deadline:
                    n += 1
                    r = await client.post(
                        "/tell",
                        headers={"X-Tenant-ID": "bench"},
                        json={
                            "predicate": "edge",
                            "args": [f"w{i}-{n}-{time.time_ns()}", n],
                        },
                    )
                    r.raise_for_status()
                    done += 1

            started = time.monotonic()
            await asyncio.gather(*(worker(i) for i in range(connections)))
            return done / (time.monotonic() - started)

    return asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="nocturnus-bench-"))
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "NOCTURNUS_MASTER_KEY": os.urandom(32).hex(),
        "NOCTURNUS_LOG_LEVEL": "DEBUG",  # the group-commit figures are logged at DEBUG
    }
    noop_port, floor_port, ours_port = free_port(), free_port(), free_port()
    noop = subprocess.Popen(
        [sys.executable, "-c", NOOP_APP, str(noop_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    floor = subprocess.Popen(
        [sys.executable, "-c", FLOOR_APP, str(floor_port), str(work / "floor.db")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    # The child holds its own copy of the log's descriptor; ours closes at once.
    with open(work / "nocturnus.log", "wb") as ours_log:
        ours = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "nocturnus",
                "serve",
                "--port",
                str(ours_port),
                "--data-dir",
                str(work / "data"),
            ],
            stdout=ours_log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    noop_url, floor_url, ours_url = (
        f"http://127.0.0.1:{noop_port}",
        f"http://127.0.0.1:{floor_port}",
        f"http://127.0.0.1:{ours_port}",
    )
    servers = (noop, floor, ours)
    try:
        wait_ready(noop_url, noop)
        wait_ready(floor_url, floor)
        wait_ready(ours_url, ours)
        wrk = ensure_wrk()
        tool = "wrk (2 threads, Lua POST script)" if wrk else "asyncio+httpx client"
        print(
            f"load generator: {tool}; {args.connections} connections, "
            f"{args.seconds} s per run, {args.rounds} rounds, {os.cpu_count()} CPUs"
        )

        def measure(url: str) -> float:
            if wrk:
                return run_wrk(
                    wrk, url, work / "tell.lua", args.seconds, args.connections
                )
            return run_httpx(url, args.seconds, args.connections)

        measure(ours_url)  # warm-up: tenant created, caches filled
        measure(floor_url)
        ratios, floors = [], []
        for round_ in range(1, args.rounds + 1):
            noop_rps = measure(noop_url)
            floor_rps = measure(floor_url)
            ours_rps = measure(ours_url)
            ratios.append(ours_rps / noop_rps)
            floors.append(floor_rps / noop_rps)
            print(
                f"round {round_}: no-op Sanic {noop_rps:9,.0f} req/s | durable floor "
                f"{floor_rps:9,.0f} ({floor_rps / noop_rps:6.1%}) | Nocturnus durable "
                f"/tell {ours_rps:9,.0f} ({ours_rps / noop_rps:6.1%})"
            )
        print(
            f"median ratio to the no-op: Nocturnus {statistics.median(ratios):.1%} "
            f"(target >= 70 %); durable floor {statistics.median(floors):.1%}"
        )
    finally:
        for process in servers:
            process.send_signal(signal.SIGTERM)
        for process in servers:
            process.wait(60)
    batching = [
        line
        for line in (work / "nocturnus.log").read_text().splitlines()
        if "appends in" in line and "'default'" in line
    ]
    if batching:
        print("group commit:", batching[-1].split("nocturnus.service ")[-1])
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
