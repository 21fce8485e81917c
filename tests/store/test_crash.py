"""kill -9 under concurrent write load: no acknowledged append is lost, nothing torn."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from nocturnus.store.crypto import MasterKey
from nocturnus.store.sealer import Sealer
from nocturnus.store.verify import verify_log
from tests.store.conftest import Backend

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from nocturnus.store.backends import open_store
    from nocturnus.store.crypto import MasterKey
    from nocturnus.store.sealer import Append, Sealer
    from nocturnus.store.writer import Writer

    location, data_dir = sys.argv[1], Path(sys.argv[2])
    key = MasterKey(bytes.fromhex(sys.argv[3]))
    store = open_store(location, data_dir)

    async def main():
        writer = Writer(lambda: Sealer.open(store.recorder("acme"), key))
        await writer.start()
        print("READY", flush=True)

        async def client(i):
            n = 0
            while True:
                n += 1
                body = b'{"client": %d, "n": %d}' % (i, n)
                seqs = await writer.append(Append(f"t{i % 3}", None, 1, [("fact_told", body)]))
                sys.stdout.write(f"ACK {seqs.start}\\n")
                sys.stdout.flush()

        await asyncio.gather(*(client(i) for i in range(16)))

    asyncio.run(main())
    """
)


def test_kill_9_loses_no_acknowledged_append(backend: Backend) -> None:
    raw = os.urandom(32)
    key = MasterKey(raw)
    location = getattr(backend, "location", "")
    data_dir = getattr(backend.store, "data_dir", Path("."))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    acked: set[int] = set()
    rng = random.Random(1234)
    for _ in range(4):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, location, str(data_dir), raw.hex()],
            stdout=subprocess.PIPE,
            env=env,
        )
        assert child.stdout is not None
        assert child.stdout.readline() == b"READY\n"
        first = child.stdout.readline()  # under load from here on
        assert first.startswith(b"ACK")
        acked.add(int(first.split()[1]))
        time.sleep(rng.uniform(0.0, 0.3))
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate(timeout=30)
        acked |= {
            int(line.split()[1]) for line in out.splitlines() if line.startswith(b"ACK")
        }
        log = Sealer.open(backend.store.recorder("acme"), key)
        try:
            head = log.head()
            assert acked and max(acked) <= head
            bodies = {r.seq: r.body for r in log.read()}
            assert sorted(bodies) == list(range(1, head + 1))
            assert all(bodies[s] is not None for s in acked)
            assert verify_log(log).ok
        finally:
            log.close()
