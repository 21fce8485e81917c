"""kill -9 under concurrent HTTP write load: every 2xx write survives, nothing is torn.

Issue 3: a subprocess server takes tells, atomic bulk tells and forgets from many
threads and is SIGKILLed at a random moment, round after round on the same data dir
(with snapshots every few events, so some kills land in the middle of one). After each
restart, every write that got a 2xx is there, every bulk batch is all-or-nothing, and
nothing appears that no client sent.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from nocturnus.service.maintenance import verify_database
from nocturnus.store.backends import open_store
from nocturnus.store.crypto import parse_master_key
from tests.server import TEST_MASTER_KEY, Server

ROUNDS = 10
CLIENTS = 16
BULK = 5
TENANTS = ("acme", "globex")


@dataclass
class Ledger:
    """What the clients sent and what was acknowledged, across rounds."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    told: set[tuple[str, str, int]] = field(default_factory=set)  # attempted
    acked: set[tuple[str, str, int]] = field(default_factory=set)
    forgetting: set[tuple[str, str, int]] = field(default_factory=set)  # attempted
    forgotten: set[tuple[str, str, int]] = field(default_factory=set)  # acked
    bulks: dict[tuple[str, str], bool] = field(default_factory=dict)  # batch -> acked
    errors: list[str] = field(default_factory=list)  # anything but a dropped connection


def client(
    http: httpx.Client, ledger: Ledger, name: str, seed: float, stop: threading.Event
) -> None:
    rng = random.Random(seed)
    mine: list[tuple[str, str, int]] = []
    n = 0
    while not stop.is_set():
        n += 1
        tenant = TENANTS[n % len(TENANTS)]
        roll = rng.random()
        try:
            if roll < 0.15 and mine:
                fact = mine.pop(rng.randrange(len(mine)))
                with ledger.lock:
                    ledger.forgetting.add(fact)
                r = http.post("/forget", headers={"X-Tenant-ID": fact[0]},
                              json={"predicate": "p", "args": [fact[1], fact[2]]})
                if r.status_code == 200:
                    with ledger.lock:
                        ledger.forgotten.add(fact)
            elif roll < 0.35:
                batch = f"{name}-{n}"
                with ledger.lock:
                    ledger.bulks[(tenant, batch)] = False
                facts = [{"predicate": "bulk", "args": [batch, k]} for k in range(BULK)]
                r = http.post("/assert/facts", headers={"X-Tenant-ID": tenant},
                              json={"facts": facts, "atomic": True})
                if r.status_code == 200:
                    assert r.json()["asserted"] == BULK
                    with ledger.lock:
                        ledger.bulks[(tenant, batch)] = True
            else:
                fact = (tenant, name, n)
                with ledger.lock:
                    ledger.told.add(fact)
                r = http.post("/tell", headers={"X-Tenant-ID": tenant},
                              json={"predicate": "p", "args": [name, n]})
                if r.status_code == 200:
                    with ledger.lock:
                        ledger.acked.add(fact)
                    mine.append(fact)
            assert r.status_code < 500 or r.status_code == 503, r.text
        except httpx.TransportError:
            return  # the server died under us: the outcome is unknown
        except Exception as e:  # noqa: BLE001 - reported by the test, not the thread
            with ledger.lock:
                ledger.errors.append(repr(e))
            return


def present(server: Server) -> tuple[set[tuple[str, str, int]], dict[tuple[str, str], int]]:
    facts: set[tuple[str, str, int]] = set()
    bulks: dict[tuple[str, str], int] = {}
    for tenant in TENANTS:
        r = server.request("POST", "/query", tenant=tenant, json={"predicate": "p", "args": ["?c", "?n"]})
        assert r.status_code == 200, r.text
        facts |= {(tenant, *row["args"]) for row in r.json()["results"]}
        r = server.request("POST", "/query", tenant=tenant, json={"predicate": "bulk", "args": ["?b", "?k"]})
        assert r.status_code == 200, r.text
        for row in r.json()["results"]:
            key = (tenant, row["args"][0])
            bulks[key] = bulks.get(key, 0) + 1
    return facts, bulks


def check(server: Server, ledger: Ledger) -> tuple[int, int]:
    facts, bulks = present(server)
    with ledger.lock:
        missing = ledger.acked - ledger.forgetting - facts
        assert not missing, f"acknowledged tells lost: {sorted(missing)[:5]}"
        assert not (ledger.forgotten & facts), "acknowledged forgets undone"
        assert facts <= ledger.told, f"facts nobody sent: {sorted(facts - ledger.told)[:5]}"
        for batch, count in bulks.items():
            assert batch in ledger.bulks, f"bulk batch nobody sent: {batch}"
            assert count == BULK, f"bulk batch {batch} half-applied: {count}/{BULK}"
        lost = [b for b, acked in ledger.bulks.items() if acked and b not in bulks]
        assert not lost, f"acknowledged bulk batches lost: {lost[:5]}"
        return len(ledger.acked), sum(ledger.bulks.values())


def test_kill_9_under_http_load_loses_no_acknowledged_write(tmp_path: Path) -> None:
    kill_9_under_load(Server(tmp_path / "data", env={"NOCTURNUS_SNAPSHOT_EVERY": "40"}))


def kill_9_under_load(server: Server) -> None:
    """SIGKILL a server under write load, restart it, find every acknowledged write;
    also run on PostgreSQL (tests/api/test_postgresql.py)."""
    rng = random.Random(20261128)
    ledger = Ledger()
    server.start()
    for round_ in range(ROUNDS):
        stop = threading.Event()
        limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
        http = httpx.Client(base_url=server.url, timeout=10, limits=limits)
        threads = [
            threading.Thread(target=client, args=(http, ledger, f"r{round_}c{i}", rng.random(), stop))
            for i in range(CLIENTS)
        ]
        before = len(ledger.acked)
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while len(ledger.acked) < before + CLIENTS:  # under load from here on
            assert time.monotonic() < deadline and not ledger.errors, ledger.errors
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.5))
        server.stop(signal.SIGKILL)
        stop.set()
        for thread in threads:
            thread.join(30)
        http.close()
        assert not ledger.errors, ledger.errors
        server.start()
        acked, bulks = check(server, ledger)
        print(f"round {round_ + 1}: SIGKILL under load; {acked} tells and {bulks} bulk "
              "batches acknowledged so far, all present after restart")
    acked, bulks = check(server, ledger)
    assert server.stop() == 0
    assert acked > ROUNDS * 10 and bulks > ROUNDS  # the load was real
    key = parse_master_key(TEST_MASTER_KEY, "test")
    store = open_store(server.env.get("NOCTURNUS_STORE", ""), server.data_dir)
    try:
        for name in ("_system", "default"):
            assert verify_database(store, key, name).ok
    finally:
        store.close()
