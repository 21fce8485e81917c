"""What the head anchor costs a group commit (issue 14, item 6), measured in one run.

One SQLite log (WAL, ``synchronous=FULL``) takes ``--commits`` group commits of
``--batch`` one-event appends (the batch a loaded server commits at once), alternating
commit by commit between the sealer as shipped (the anchor written after every commit)
and the same sealer with its anchor detached, so drifting load and fsync times hit both
alike; the median commit of each and their ratio are printed. ``Anchor.advance`` is
also timed alone (``flock``, a 256-byte ``pread`` and ``pwrite``, one HMAC): that is all
the anchor adds to a commit.

    python benchmarks/anchor.py [--commits 1000] [--batch 14]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nocturnus.store.anchor import Anchor
from nocturnus.store.crypto import MasterKey
from nocturnus.store.recorder import Tip
from nocturnus.store.sealer import Append, Sealer
from nocturnus.store.sqlite import SqliteStore

BODY = b'{"predicate":"edge","args":["RUN-1-1",1],"scope":"main","metadata":{}}'


def commit_seconds(sealer: Sealer, batch: int) -> float:
    """Seconds one group commit of ``batch`` one-event appends takes."""
    appends = [Append(f"t{i}", None, 1, [("fact_told", BODY)]) for i in range(batch)]
    started = time.perf_counter()
    sealer.append(appends)
    return time.perf_counter() - started


def advance_seconds(anchor: Anchor, head: Tip, count: int) -> float:
    """Seconds per ``Anchor.advance`` that moves the anchor (a new seq each time)."""
    started = time.perf_counter()
    for seq in range(head.seq + 1, head.seq + 1 + count):
        anchor.advance(Tip(seq, head.hash))
    return (time.perf_counter() - started) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commits", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=14)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sealer = Sealer.open(SqliteStore(Path(tmp)).recorder("bench"), MasterKey(os.urandom(32)))
        anchor = sealer.anchor
        assert anchor is not None
        for _ in range(20):  # warm-up
            commit_seconds(sealer, args.batch)
        with_anchor, without = [], []
        for _ in range(args.commits):
            with_anchor.append(commit_seconds(sealer, args.batch))
            sealer.anchor = None
            without.append(commit_seconds(sealer, args.batch))
            sealer.anchor = anchor
        advance = advance_seconds(anchor, sealer.tip(), 2000)
        sealer.close()
    on, off = statistics.median(with_anchor), statistics.median(without)
    print(f"group commit of {args.batch} one-event appends, median of {args.commits} each, "
          "interleaved:")
    print(f"  without the anchor   {off * 1e3:8.3f} ms")
    print(f"  with the anchor      {on * 1e3:8.3f} ms   ({(on / off - 1) * 100:+.1f} %)")
    print(f"  Anchor.advance alone {advance * 1e6:8.1f} us   "
          f"({advance / off * 100:.2f} % of a commit without it)")


if __name__ == "__main__":
    main()
