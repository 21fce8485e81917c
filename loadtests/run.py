"""Run the locust agent mix headless against a fresh local server, for a bounded time.

    pip install -e '.[load]'
    python loadtests/run.py --users 32 --duration 60s

Starts ``nocturnus serve`` on a free loopback port with a temporary data directory, waits
until it is ready, runs locust headless (``--run-time`` bounds it; a hard timeout bounds
the whole run), reads the group-commit figures from ``/metrics``, stops the server with
SIGTERM and writes ``report.md`` (requests/s, p50/p95/p99, failures per request name,
machine description) next to locust's CSV files in ``--out``. Traffic only goes to
127.0.0.1.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited early with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("server did not become ready")


def seconds(duration: str) -> int:
    match = re.fullmatch(r"(\d+)([smh]?)", duration)
    if not match:
        raise SystemExit(f"bad duration {duration!r} (use 30s, 2m, 1h)")
    return int(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def group_commit_figures(url: str) -> dict[str, float]:
    """Averages over the run from the server's own counters (all databases)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    totals: dict[str, float] = {}
    for name in (
        "nocturnus_group_commit_batch_requests_sum", "nocturnus_group_commit_batch_requests_count",
        "nocturnus_commit_duration_seconds_sum", "nocturnus_events_appended_total",
    ):
        totals[name] = sum(float(v) for v in re.findall(rf"^{name}{{[^}}]*}} (\S+)$", text, re.MULTILINE))
    commits = totals["nocturnus_group_commit_batch_requests_count"] or 1
    return {
        "commits": totals["nocturnus_group_commit_batch_requests_count"],
        "events": totals["nocturnus_events_appended_total"],
        "requests_per_commit": totals["nocturnus_group_commit_batch_requests_sum"] / commits,
        "commit_ms": 1000 * totals["nocturnus_commit_duration_seconds_sum"] / commits,
    }


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (
        f"{os.cpu_count()} cores ({cpu}){memory}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}; locust and the server share the machine"
    )


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                             capture_output=True, text=True, timeout=10, check=False)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def report(
    stats_csv: Path, args: argparse.Namespace, commit: dict[str, float], load_before: float
) -> str:
    rows = list(csv.DictReader(stats_csv.open()))
    lines = [
        f"# Load test {datetime.now(UTC):%Y-%m-%d %H:%M} UTC (commit {git_commit()})",
        "",
        f"- machine: {machine()}; 1-minute load average before the run: {load_before:.2f}",
        (
            f"- run: {args.users} users (ingest:reasoning:context = 3:3:2), spawn rate "
            f"{args.spawn_rate}/s, {args.duration}; server: one process, data on local disk, "
            "every write fsync'd before its answer"
        ),
        (
            f"- group commit: {commit['commits']:.0f} commits for {commit['events']:.0f} "
            f"events, {commit['requests_per_commit']:.1f} write requests per commit on "
            f"average, {commit['commit_ms']:.2f} ms per commit (append + COMMIT + fsync)"
        ),
    ]
    if not any(r["Name"].startswith("/context") for r in rows):
        lines.append("- context agents: skipped (this build serves no /context/optimize)")
    lines += [
        "",
        "| request | count | failures | req/s | p50 ms | p95 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        name = "**all**" if row["Name"] == "Aggregated" else f"{row['Type']} {row['Name']}"
        lines.append(
            f"| {name} | {row['Request Count']} | {row['Failure Count']} | "
            f"{float(row['Requests/s']):.1f} | {row['50%']} | {row['95%']} | {row['99%']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--spawn-rate", type=float, default=16)
    parser.add_argument("--duration", default="60s", help="locust --run-time (30s, 2m)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--tenants", type=int, default=500, help="ingest tenant pool size")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    run_s = seconds(args.duration)

    load_before = os.getloadavg()[0]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    prefix = args.out / "run"
    with tempfile.TemporaryDirectory(prefix="nocturnus-load-") as tmp:
        env = {
            **os.environ,
            "NOCTURNUS_MASTER_KEY": secrets.token_hex(32),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        with open(args.out / "server.log", "wb") as server_log:
            server = subprocess.Popen(
                [sys.executable, "-m", "nocturnus", "serve", "--port", str(port),
                 "--data-dir", f"{tmp}/data"],
                stdout=server_log, stderr=subprocess.STDOUT, env=env,
            )
            try:
                wait_ready(url, server)
                locust = [
                    sys.executable, "-m", "locust", "-f", str(HERE / "locustfile.py"),
                    "--headless", "--users", str(args.users),
                    "--spawn-rate", str(args.spawn_rate), "--run-time", args.duration,
                    "--stop-timeout", "5", "--host", url, "--csv", str(prefix),
                    "--only-summary", "--loglevel", "WARNING",
                ]
                locust_env = {**env, "LOAD_TENANTS": str(args.tenants)}
                code = subprocess.run(
                    locust, env=locust_env, timeout=run_s + 120, check=False
                ).returncode
                commit = group_commit_figures(url)
            finally:
                server.send_signal(signal.SIGTERM)
                try:
                    server.wait(60)
                except subprocess.TimeoutExpired:
                    server.kill()
    text = report(Path(f"{prefix}_stats.csv"), args, commit, load_before)
    (args.out / "report.md").write_text(text)
    print(text)
    # locust exits 1 when any request failed: the report shows which.
    return code


if __name__ == "__main__":
    sys.exit(main())
