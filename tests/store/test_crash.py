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
from nocturnus.store.log import EventLog

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from nocturnus.store.crypto import MasterKey
    from nocturnus.store.log import EventLog
    from nocturnus.store.record import LogRecord
    from nocturnus.store.writer import Writer

    path, key = Path(sys.argv[1]), MasterKey(bytes.fromhex(sys.argv[2]))

    async def main():
        writer = Writer(lambda: EventLog.open(path, "acme", key))
        await writer.start()
        head = await writer.run(lambda log: log.head())
        seqs = iter(range(head + 1, 10**9))
        print("READY", flush=True)

        async def client(i):
            while True:
                seq = next(seqs)
                body = b'{"client": %d, "seq": %d}' % (i, seq)
                await writer.append([LogRecord(seq, seq, f"t{i % 3}", "fact_told", body)])
                sys.stdout.write(f"ACK {seq}\\n")
                sys.stdout.flush()

        await asyncio.gather(*(client(i) for i in range(16)))

    asyncio.run(main())
    """
)


def test_kill_9_loses_no_acknowledged_append(tmp_path: Path) -> None:
    raw = os.urandom(32)
    key, key_hex = MasterKey(raw), raw.hex()
    path = tmp_path / "acme.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    acked: set[int] = set()
    rng = random.Random(1234)
    for _ in range(4):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), key_hex],
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
        log = EventLog.open(path, "acme", key)
        try:
            head = log.head()
            assert acked and max(acked) <= head
            bodies = {r.seq: r.body for r in log.read()}
            assert sorted(bodies) == list(range(1, head + 1))
            assert all(bodies[s] is not None for s in acked)
            assert log.verify().ok
        finally:
            log.close()
