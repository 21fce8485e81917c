"""Cost of authentication on ``POST /ask``: auth on (a scoped writer key) vs auth off.

Starts two servers on loopback with the same data (a grandparent rule over a parent
chain), then alternates rounds of keep-alive ``/ask`` requests between them with a tiny
raw-HTTP client (so the client's own CPU barely dilutes the comparison on 2 cores). For
each server it prints the median of the rounds in requests per second of wall time and
in requests per CPU-second of the server process (from /proc: what the server itself
spent, which other load on a shared machine disturbs far less than wall time), and the
ratios. Target (issue 7): auth on ≥ 0.90 × auth off.

    PYTHONPATH=$PWD python benchmarks/auth_overhead.py [--query grandparent|ancestor]
        [--rounds 15] [--requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

MASTER_KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
ADMIN_KEY = "bench-admin-key-0123456789abcdef"
DATABASE, TENANT = "production", "acme_corp"
QUERIES = {
    # one answer through one non-recursive rule: the cheapest /ask, the worst case for
    # the relative cost of authentication
    "grandparent": {"predicate": "grandparent", "args": ["?who", "p10"]},
    # 20 answers through a recursive rule: a more typical reasoning request
    "ancestor": {"predicate": "ancestor", "args": ["?who", "p20"]},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(data_dir: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    full = {**os.environ, "NOCTURNUS_MASTER_KEY": MASTER_KEY, **env}
    process = subprocess.Popen(
        [sys.executable, "-m", "nocturnus", "serve", "--port", str(port), "--data-dir", str(data_dir)],
        env=full, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health/ready").status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("server did not start")


def populate(url: str, headers: dict[str, str]) -> None:
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        client.post("/databases", json={"name": DATABASE}).raise_for_status()
        data = {"X-Database": DATABASE, "X-Tenant-ID": TENANT}
        for i in range(200):
            client.post("/tell", headers=data, json={"predicate": "parent", "args": [f"p{i}", f"p{i + 1}"]})
        for head, body in (
            (["grandparent", "?x", "?z"], [["parent", "?x", "?y"], ["parent", "?y", "?z"]]),
            (["ancestor", "?x", "?y"], [["parent", "?x", "?y"]]),
            (["ancestor", "?x", "?z"], [["parent", "?x", "?y"], ["ancestor", "?y", "?z"]]),
        ):
            client.post("/teach", headers=data, json={
                "head": {"predicate": head[0], "args": head[1:]},
                "body": [{"predicate": b[0], "args": b[1:]} for b in body],
            }).raise_for_status()


def request_bytes(port: int, key: str | None, query: str = "grandparent") -> bytes:
    ask = orjson.dumps(QUERIES[query])
    lines = [
        "POST /ask HTTP/1.1", f"Host: 127.0.0.1:{port}", "Content-Type: application/json",
        f"X-Database: {DATABASE}", f"X-Tenant-ID: {TENANT}", f"Content-Length: {len(ask)}",
    ]
    if key is not None:
        lines.append(f"Authorization: Bearer {key}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + ask


async def worker(port: int, payload: bytes, count: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(count):
            writer.write(payload)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise SystemExit(f"unexpected answer: {head[:80]!r}")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
    finally:
        writer.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(pid: int, port: int, payload: bytes, requests: int, connections: int) -> tuple[float, float]:
    """(requests per wall second, requests per server CPU second) of one round."""
    per = requests // connections
    cpu_before, began = cpu_seconds(pid), time.perf_counter()
    await asyncio.gather(*(worker(port, payload, per) for _ in range(connections)))
    wall, cpu = time.perf_counter() - began, cpu_seconds(pid) - cpu_before
    return per * connections / wall, per * connections / max(cpu, 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--query", choices=sorted(QUERIES), default="grandparent")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        off, off_url = start(Path(tmp) / "off", {"NOCTURNUS_AUTH": "off"})
        on, on_url = start(Path(tmp) / "on", {
            "NOCTURNUS_AUTH": "on", "NOCTURNUS_ADMIN_KEY": ADMIN_KEY,
            # limits stay on (their cost is part of the measure) but high enough not to bite
            "NOCTURNUS_RATE_LIMIT_WRITER_RPM": "100000000",
        })
        try:
            populate(off_url, {})
            populate(on_url, {"X-API-Key": ADMIN_KEY})
            created = httpx.post(on_url + "/auth/keys", headers={"X-API-Key": ADMIN_KEY}, json={
                "role": "writer", "databases": [DATABASE], "tenants": [TENANT],
            })
            key = created.json()["key"]
            ports = {"off": int(off_url.rsplit(":", 1)[1]), "on": int(on_url.rsplit(":", 1)[1])}
            payloads = {
                "off": request_bytes(ports["off"], None, args.query),
                "on": request_bytes(ports["on"], key, args.query),
            }
            pids = {"off": off.pid, "on": on.pid}
            wall: dict[str, list[float]] = {"off": [], "on": []}
            cpu: dict[str, list[float]] = {"off": [], "on": []}
            for name in ("off", "on"):  # warm up: caches, the argon2 check of the key
                asyncio.run(measure(pids[name], ports[name], payloads[name], 200, args.connections))
            for i in range(args.rounds):
                order = ("off", "on") if i % 2 == 0 else ("on", "off")
                for name in order:
                    w, c = asyncio.run(measure(
                        pids[name], ports[name], payloads[name], args.requests, args.connections
                    ))
                    wall[name].append(w)
                    cpu[name].append(c)
        finally:
            for process in (off, on):
                process.terminate()
                process.wait(30)
    print(f"query: {args.query} {orjson.dumps(QUERIES[args.query]).decode()}, "
          f"{args.rounds} rounds x {args.requests} requests, {args.connections} connections")
    for rates, unit in ((wall, "req/s (wall)"), (cpu, "req per server CPU-second")):
        off_rate, on_rate = statistics.median(rates["off"]), statistics.median(rates["on"])
        paired = statistics.median(on / off for on, off in zip(rates["on"], rates["off"]))
        print(f"/ask auth off: {off_rate:8.0f} {unit}")
        print(f"/ask auth on : {on_rate:8.0f} {unit}")
        print(f"ratio on/off : {on_rate / off_rate:.3f} (medians), {paired:.3f} (median of "
              f"{len(rates['on'])} adjacent round pairs); target >= 0.90")


if __name__ == "__main__":
    main()
