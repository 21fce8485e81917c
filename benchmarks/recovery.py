"""Recovery speed: replay of 1 M events, and time to ready from snapshots.

Issue 3 / DESIGN.md targets: replaying 1 M events from seq 0 runs at >= 200 k events/s,
and a server is ready in < 2 s when every tenant has a snapshot. The log is written once
(encrypted and hash-chained like any other: 1 M ``fact_told``/``fact_retracted`` events
over ``--tenants`` tenants, plus a few rules) and reused with ``--keep DIR``.

Figures printed:
- the phases of a replay (read + decrypt, decode, apply, build the visibility indexes
  of every tenant), one after the other;
- a full replay in one process (``replay_log``: all of those phases), in events/s and
  per CPU second;
- ``nocturnus replay``'s own code (``replay_database``), which splits the tenants over
  one process per CPU: wall time of the whole, CPU of every process;
- the time to snapshot every tenant (``nocturnus snapshot``: a replay of each tenant,
  then encoding and storing its snapshot);
- one tenant loaded from its snapshot + tail (``Database.tenant``), and the time to
  encode that tenant's snapshot;
- a real ``nocturnus serve`` process: start to ``/health/ready``, and to the first
  answer of every tenant (each loads from its snapshot on first use).

    python benchmarks/recovery.py [--events 1000000] [--tenants 10] [--keep DIR]
        [--store postgresql://postgres@127.0.0.1:5432/DBNAME]

``--store`` keeps the log in that PostgreSQL database instead of the data dir's SQLite
files (``NOCTURNUS_STORE``; the data dir still holds the server's lock): a kept log
there is reused as a kept data dir is.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nocturnus.engine.collector import collector_paused
from nocturnus.service import snapshot_format
from nocturnus.service.codec import CODEC
from nocturnus.service.database import Database, DatabaseState, apply_database_event
from nocturnus.service.databases import Databases
from nocturnus.service.events import FactRetracted, FactTold, RuleTaught
from nocturnus.service.maintenance import replay_database, replay_log, snapshot_database
from nocturnus.service.projection import TenantState, apply_fields, reader
from nocturnus.store.backends import open_store
from nocturnus.store.crypto import MasterKey
from nocturnus.store.recorder import Store
from nocturnus.store.sealer import Append, Sealer
from nocturnus.store.sqlite import read_database_name

KEY_HEX = "5eed" * 16
DATABASE = "bench"
BATCH = 20_000
TS0 = 1_700_000_000_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def generate(store: Store, data_dir: Path, events: int, tenants: int) -> None:
    """Write the benchmark database through the service registry and the event log."""
    key = MasterKey(bytes.fromhex(KEY_HEX))

    async def register() -> None:
        databases = Databases(data_dir, key, store=store)
        await databases.open()
        await databases.create(DATABASE)
        await databases.close()

    asyncio.run(register())
    log = Sealer.open(store.recorder(DATABASE), key)
    started = time.perf_counter()
    try:
        seq = log.head()
        batch: list[Append] = []
        rule = RuleTaught(
            id="r_path",
            head={
                "predicate": "path",
                "args": ["?x", "?y"],
                "negated": False,
                "naf": False,
            },
            body=(
                {
                    "predicate": "edge",
                    "args": ["?x", "?y"],
                    "negated": False,
                    "naf": False,
                },
            ),
            created_at=TS0,
        )
        for t in range(tenants):
            seq += 1
            batch.append(Append(f"tenant{t}", None, TS0, [(rule.kind, CODEC.encode(rule))]))
        n = 0
        while seq < events:
            seq += 1
            n += 1
            tenant = f"tenant{n % tenants}"
            if (
                n // tenants
            ) % 20 == 19:  # 5 %: retract a fact this tenant told earlier
                m = n - tenants * 3
                event = FactRetracted("edge", (f"n{m}", m % 997), False, "main")
            else:
                event = FactTold(
                    "edge",
                    (f"n{n}", n % 997),
                    False,
                    "main",
                    TS0 + n,
                    TS0 + n,
                    confidence=0.9 if n % 3 == 0 else None,
                )
            batch.append(Append(tenant, None, TS0 + n, [(event.kind, CODEC.encode(event))]))
            if len(batch) >= BATCH:
                log.append(batch)
                batch = []
                print(
                    f"\r  writing the log: {seq:,}/{events:,} events",
                    end="",
                    flush=True,
                )
        if batch:
            log.append(batch)
    finally:
        log.close()
    print(f"\r  wrote {events:,} events in {time.perf_counter() - started:.1f} s")


def measure_replay(store: Store, key: MasterKey) -> None:
    log = Sealer.open(store.recorder(DATABASE, readonly=True), key)
    try:
        # The phases of replay.fold, one after the other over the whole log.
        with collector_paused():
            started = time.perf_counter()
            entries = list(log.entries())
            read_s = time.perf_counter() - started
            started = time.perf_counter()
            decoded: list[tuple[int, str, str, Any]] = []
            for seq, _, tenant, kind, body in entries:
                if body is None:
                    continue
                decoded.append(
                    (
                        seq,
                        tenant,
                        kind,
                        CODEC.decode(kind, body)
                        if tenant == ""
                        else reader(kind)(body),
                    )
                )
            decode_s = time.perf_counter() - started
            started = time.perf_counter()
            root, states = DatabaseState(), {}
            for seq, tenant, kind, fields in decoded:
                if tenant == "":
                    apply_database_event(root, seq, fields)
                    continue
                state = states.get(tenant)
                if state is None:
                    state = states[tenant] = TenantState(tenant)
                apply_fields(state, seq, kind, fields)
            apply_s = time.perf_counter() - started
            started = time.perf_counter()
            for state in states.values():
                state.refresh(TS0 + 10**12)
            refresh_s = time.perf_counter() - started
            del entries, decoded, states
        total = read_s + decode_s + apply_s + refresh_s
        n = log.head()
        print(
            f"  phases: read+decrypt {read_s:.2f} s | decode {decode_s:.2f} s | apply "
            f"{apply_s:.2f} s | build indexes {refresh_s:.2f} s | sum {total:.2f} s "
            f"= {n / total:,.0f} events/s"
        )

        cpu = time.process_time()
        _, _, summary = replay_log(log)
        cpu = time.process_time() - cpu
        print(
            f"  full replay, one process (replay_log): {summary.events:,} events in "
            f"{summary.seconds:.2f} s = {summary.events / summary.seconds:,.0f} events/s "
            f"({summary.events / cpu:,.0f} per CPU second, {cpu:.2f} s CPU); "
            f"{len(summary.tenants)} tenants, {summary.facts:,} facts"
        )
    finally:
        log.close()
    workers = os.cpu_count() or 1
    cpu, children = time.process_time(), resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = replay_database(store, key, DATABASE, workers=workers)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = time.process_time() - cpu + after.ru_utime - children.ru_utime
    cpu += after.ru_stime - children.ru_stime
    print(
        f"  full replay (nocturnus replay --workers {workers}): {summary.events:,} events "
        f"in {summary.seconds:.2f} s = {summary.events / summary.seconds:,.0f} events/s "
        f"(target >= 200,000; {summary.processes} processes, {summary.events / cpu:,.0f} "
        f"per CPU second, {cpu:.2f} s CPU in all)"
    )


def measure_tenant_load(store: Store, key: MasterKey, tenant: str) -> None:
    async def load() -> tuple[float, int, int, float]:
        db: Database[DatabaseState] = Database(
            DATABASE,
            store,
            key,
            root_factory=DatabaseState,
            root_apply=apply_database_event,
        )
        await db.open()
        try:
            started = time.perf_counter()
            state = await db.tenant(tenant)
            state.refresh(TS0 + 10**12)
            seconds = time.perf_counter() - started
            encoding = time.perf_counter()
            snapshot_format.encode(state)
            encode_s = time.perf_counter() - encoding
            return seconds, state.fact_count(), db._unsnapshotted[tenant], encode_s
        finally:
            db._unsnapshotted.clear()
            await db.close()

    seconds, facts, tail, encode_s = asyncio.run(load())
    print(
        f"  one tenant from its snapshot: {tenant} ({facts:,} facts, tail {tail} events) "
        f"ready in {seconds:.2f} s; encoding its snapshot takes {encode_s:.2f} s"
    )


def measure_server(data_dir: Path, location: str) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NOCTURNUS_MASTER_KEY": KEY_HEX,
           "NOCTURNUS_STORE": location}
    started = time.perf_counter()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nocturnus",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        with httpx.Client(base_url=url, timeout=120) as http:
            while True:
                try:
                    if http.get("/health/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.02)
            ready_s = time.perf_counter() - started
            tenants = [
                t["name"]
                for t in http.get(f"/admin/databases/{DATABASE}/tenants").json()[
                    "tenants"
                ]
            ]
            for tenant in tenants:
                r = http.post(
                    "/ask",
                    headers={"X-Tenant-ID": tenant, "X-Database": DATABASE},
                    json={"predicate": "path", "args": ["n1", "?y"]},
                )
                r.raise_for_status()
            answered_s = time.perf_counter() - started
        print(
            f"  nocturnus serve: process start -> /health/ready {ready_s:.2f} s (target "
            f"< 2 s); -> first answer of all {len(tenants)} tenants {answered_s:.2f} s"
        )
    finally:
        process.terminate()
        process.wait(120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument(
        "--keep", type=Path, default=None, help="Reuse/keep the data dir here"
    )
    parser.add_argument(
        "--store", default="", help="A postgresql:// URL: the log there (default: SQLite)"
    )
    args = parser.parse_args()
    key = MasterKey(bytes.fromhex(KEY_HEX))
    data_dir = (
        args.keep or Path(tempfile.mkdtemp(prefix="nocturnus-recovery-")) / "data"
    )
    print(
        f"recovery benchmark: {args.events:,} events over {args.tenants} tenants, "
        f"{os.cpu_count()} CPUs, data dir {data_dir}, store {args.store or 'SQLite'}"
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(args.store, data_dir)
    try:
        if not store.exists(DATABASE):
            generate(store, data_dir, args.events, args.tenants)
        forget_snapshots(store, data_dir, key, args.store)
        measure_replay(store, key)
        started = time.perf_counter()
        result = snapshot_database(store, key, DATABASE)
        print(
            f"  snapshotted {result.written} tenants in {time.perf_counter() - started:.2f} s"
        )
        measure_tenant_load(store, key, "tenant1")
    finally:
        store.close()
    measure_server(data_dir, args.store)
    if args.keep is None:
        shutil.rmtree(data_dir.parent, ignore_errors=True)


def forget_snapshots(store: Store, data_dir: Path, key: MasterKey, location: str) -> None:
    """A kept log starts from the log alone: its snapshots are deleted."""
    if location:
        import psycopg

        from nocturnus.store.postgresql import schema_name

        schema = schema_name(DATABASE)
        with psycopg.connect(location, autocommit=True) as pg:
            pg.execute(f'DELETE FROM "{schema}".snapshot_parts')
            pg.execute(f'DELETE FROM "{schema}".snapshots')
        return
    # A kept data dir may predate a migration: a read-write open applies it (the
    # replay opens read-only, which refuses a log that needs one).
    for path in sorted(data_dir.glob("*.db")):
        name = read_database_name(path) or path.stem
        Sealer.open(store.recorder(name), key).close()
    with sqlite3.connect(data_dir / f"{DATABASE}.db") as conn:
        conn.execute("DELETE FROM snapshots")
        conn.execute("DELETE FROM snapshot_parts")
    conn.close()


if __name__ == "__main__":
    main()
