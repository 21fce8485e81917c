"""CPU instructions per durable ``POST /tell``: Nocturnus, the no-op peer, the durable floor.

Wall-clock throughput on a shared machine moves by ±30 % between runs; instruction
counts do not. Each server runs under ``valgrind --tool=callgrind`` with instrumentation
off, gets a warm-up, then instrumentation is switched on for exactly ``--requests``
tells sent over ``--connections`` keep-alive connections, and off again. Every thread of
the server counts (the event loop, the group-commit writer, the log writer). The
ratio no-op/Nocturnus is the throughput ratio a CPU-bound server would reach; the issue's
target for the measured one is >= 70 %.

Peers (``write_peers.py``): the no-op Sanic JSON handler, and the "durable floor" (parse,
encrypt, chain, group commit, nothing else).

    python benchmarks/tell_instructions.py [--requests 2000] [--connections 16]

Needs valgrind (``apt-get install -y valgrind``, done here when missing and possible).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from write_peers import FLOOR_APP, NOOP_APP


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_valgrind() -> str:
    found = shutil.which("valgrind")
    if found is None and shutil.which("apt-get") is not None and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "valgrind"], capture_output=True, check=False)
        found = shutil.which("valgrind")
    if found is None or shutil.which("callgrind_control") is None:
        raise SystemExit("valgrind (with callgrind_control) is needed: apt-get install valgrind")
    return found


async def send_tells(port: int, total: int, connections: int) -> int:
    """Send ``total`` distinct tells over ``connections`` keep-alive connections."""
    run = uuid.uuid4().hex[:8].encode()

    async def client(i: int, count: int) -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        answered = 0
        for k in range(count):
            body = b'{"predicate":"edge","args":["%s-%d-%d",%d]}' % (run, i, k, k)
            writer.write(
                b"POST /tell HTTP/1.1\r\nHost: bench\r\nX-Tenant-ID: bench\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (len(body), body)
            )
            status = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            answered += b" 200 " in status
        writer.close()
        return answered

    per = total // connections
    return sum(await asyncio.gather(*(client(i, per) for i in range(connections))))


def measure(name: str, command: list[str], port: int, args: argparse.Namespace, work: Path) -> float:
    out = work / f"{name}.callgrind"
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
         *command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        deadline = time.monotonic() + 600
        while True:
            if server.poll() is not None:
                raise SystemExit(f"{name} exited before it was ready")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{name} did not become ready")
            time.sleep(0.5)
        asyncio.run(send_tells(port, 200, 8))  # warm-up, not counted
        subprocess.run(["callgrind_control", "-i", "on", str(server.pid)], capture_output=True, check=True)
        answered = asyncio.run(send_tells(port, args.requests, args.connections))
        subprocess.run(["callgrind_control", "-i", "off", str(server.pid)], capture_output=True, check=True)
    finally:
        server.terminate()
        server.wait(600)
    if answered != args.requests // args.connections * args.connections:
        raise SystemExit(f"{name}: only {answered} tells answered 200")
    totals = re.search(rb"^totals: (\d+)", out.read_bytes(), re.MULTILINE)
    assert totals, f"no totals in {out}"
    return int(totals.group(1)) / answered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    ensure_valgrind()
    work = Path(tempfile.mkdtemp(prefix="nocturnus-instr-"))
    try:
        ports = [free_port() for _ in range(3)]
        key = os.urandom(32).hex()
        noop = measure("no-op", [sys.executable, "-c", NOOP_APP, str(ports[0])], ports[0], args, work)
        floor = measure(
            "floor",
            [sys.executable, "-c", FLOOR_APP, str(ports[1]), str(work / "floor.db")],
            ports[1], args, work,
        )
        os.environ["NOCTURNUS_MASTER_KEY"] = key
        ours = measure(
            "nocturnus",
            [sys.executable, "-m", "nocturnus", "serve", "--port", str(ports[2]),
             "--data-dir", str(work / "data")],
            ports[2], args, work,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"instructions per POST /tell ({args.requests} requests, {args.connections} connections)")
    print(f"  no-op Sanic handler   {noop / 1000:8.0f} k")
    print(f"  durable floor         {floor / 1000:8.0f} k   no-op/floor     {noop / floor:6.1%}")
    print(f"  Nocturnus             {ours / 1000:8.0f} k   no-op/Nocturnus {noop / ours:6.1%}"
          " (target >= 70 %)")


if __name__ == "__main__":
    main()
