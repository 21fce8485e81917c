"""CPU instructions per event of the projection's hot paths, under callgrind (issue 20).

Replay, writes and snapshot loads pass every event or fact through the same few
functions; timing them on a shared machine moves by tens of percent between runs,
instruction counts do not. Each phase runs in its own ``valgrind --tool=callgrind``
process next to one that only builds the same input, and the difference is divided by
the count:

- ``fold``: ``replay.fold`` of ``--events`` logged bodies (``fact_told``, one in 20 a
  ``fact_retracted``) into one tenant, through ``projection.apply_fields``;
- ``apply``: the same events as decided ones, through ``projection.apply`` (writes);
- ``refresh``: the fold, then ``TenantState.refresh`` (the index build), less the fold;
- ``snapshot``: loading a snapshot of that many facts (one in ten with a confidence)
  and refreshing it (per fact);
- ``log``: ``maintenance.replay_log`` of those events written to a SQLite log (one in
  three with a confidence, over 10 tenants): the whole replay, reading the rows,
  decrypting, decoding, applying and building the indexes, less writing the log.

    python benchmarks/replay_instructions.py [--events 20000]

Needs valgrind (``apt-get install -y valgrind``). ``PYTHONHASHSEED=0`` in every run.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nocturnus.service import snapshot_format
from nocturnus.service.codec import CODEC
from nocturnus.service.events import Event, FactRetracted, FactTold
from nocturnus.service.maintenance import replay_log
from nocturnus.service.projection import TenantState, apply
from nocturnus.service.replay import fold
from nocturnus.store.crypto import MasterKey
from nocturnus.store.sealer import Append, Sealer
from nocturnus.store.sqlite import SqliteStore

PHASES = {
    "fold": ("events", "fold"),
    "apply": ("events", "apply"),
    "refresh": ("fold", "refresh"),
    "snapshot": ("snapshot-input", "snapshot"),
    "log": ("log-input", "log"),
}
"""Each figure: (the run it is measured against, the run that does the work)."""


def events(count: int) -> list[Event]:
    made: list[Event] = []
    for i in range(count):
        if i % 20 == 19:
            made.append(FactRetracted("p", (f"a{i - 1}", i - 1), False, "main"))
        else:
            made.append(FactTold("p", (f"a{i}", i), False, "main", 1000 + i, 1000 + i))
    return made


def replay_a_log(mode: str, count: int) -> None:
    """Write ``count`` events to a SQLite log; for ``log``, replay it from seq 0."""
    work = Path(tempfile.mkdtemp(prefix="nocturnus-replay-instr-log-"))
    key = MasterKey(bytes(range(32)))
    try:
        log = Sealer.open(SqliteStore(work).recorder("bench"), key)
        try:
            made = []
            for i in range(count):
                if i % 20 == 19:
                    event: Event = FactRetracted("p", (f"a{i - 10}", i - 10), False, "main")
                else:
                    event = FactTold("p", (f"a{i}", i), False, "main", 1000 + i, 1000 + i,
                                     confidence=0.9 if i % 3 == 0 else None)
                made.append(Append(f"t{i % 10}", None, 1000 + i,
                                   [(event.kind, CODEC.encode(event))]))
            log.append(made)
            del made
            if mode == "log":
                replay_log(log)
        finally:
            log.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(mode: str, count: int) -> None:
    """One measured process: build the input, then do ``mode``'s work."""
    gc.disable()
    if mode.startswith("log"):
        replay_a_log(mode, count)
        return
    if mode.startswith("snapshot"):
        state = TenantState("t")
        for i in range(count):
            confidence = 0.5 if i % 10 == 0 else None
            told = FactTold("p", (f"a{i}", i), False, "main", 1000 + i, 1000 + i,
                            confidence=confidence)
            apply(state, i + 1, told)
        body = snapshot_format.encode(state)
        if mode == "snapshot":
            snapshot_format.decode("t", body).refresh(10**12)
        return
    made = events(count)
    entries = [(i + 1, 0, "t", e.kind, CODEC.encode(e)) for i, e in enumerate(made)]
    state = TenantState("t")
    if mode in ("fold", "refresh"):
        fold(entries, lambda _: state)
    if mode == "refresh":
        state.refresh(10**12)
    if mode == "apply":
        for seq, event in enumerate(made, 1):
            apply(state, seq, event)


def instructions(mode: str, count: int, work: Path) -> int:
    out = work / f"{mode}.callgrind"
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
         sys.executable, __file__, "--run", mode, "--events", str(count)],
        check=True, capture_output=True, env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    totals = re.search(rb"^totals: (\d+)", out.read_bytes(), re.MULTILINE)
    assert totals, f"no totals in {out}"
    return int(totals.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--run", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        run(args.run, args.events)
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is needed: apt-get install valgrind")
    work = Path(tempfile.mkdtemp(prefix="nocturnus-replay-instr-"))
    try:
        counted: dict[str, int] = {}
        for base, mode in PHASES.values():
            for name in (base, mode):
                if name not in counted:
                    counted[name] = instructions(name, args.events, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"instructions per event or fact ({args.events} of them, callgrind)")
    for phase, (base, mode) in PHASES.items():
        print(f"  {phase:<9} {(counted[mode] - counted[base]) / args.events / 1000:8.1f} k")


if __name__ == "__main__":
    main()
