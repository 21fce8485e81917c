"""Full verification of one log: chain, every GCM tag, every snapshot, the head.

Verification reports instead of raising, so an operator sees every problem at once
(up to :data:`MAX_PROBLEMS`) and the first bad seq. It reads through the recorder
protocol and the sealer's keys, so it is the same check on every backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nocturnus.progress import Progress
from nocturnus.store.chain import GENESIS, Break, head_break, unpack_head, walk
from nocturnus.store.errors import CorruptKey, CryptoError
from nocturnus.store.record import record_aad, snapshot_aad
from nocturnus.store.sealer import Sealer

MAX_PROBLEMS = 100
PROGRESS_EVERY = 5_000


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding: where (seq, and tenant for snapshots) and what."""

    kind: str  # "chain" | "record" | "snapshot"
    seq: int
    message: str
    tenant: str | None = None


@dataclass(frozen=True, slots=True)
class VerifyReport:
    database: str
    head: int
    events_checked: int
    events_shredded: int
    snapshots_checked: int
    snapshots_shredded: int
    problems: tuple[Problem, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad_seq(self) -> int | None:
        """The lowest event seq with a chain or record problem (snapshots excluded)."""
        seqs = [p.seq for p in self.problems if p.kind != "snapshot"]
        return min(seqs) if seqs else None

    def summary(self) -> str:
        """One line for the CLI."""
        if self.ok:
            return (
                f"{self.database}: OK, {self.events_checked} events to seq {self.head} "
                f"({self.events_shredded} shredded), {self.snapshots_checked} snapshots "
                f"({self.snapshots_shredded} shredded)"
            )
        first = min(self.problems, key=lambda p: (p.kind == "snapshot", p.seq))
        where = f"tenant {first.tenant!r} " if first.tenant is not None else ""
        return (
            f"{self.database}: {len(self.problems)} problem(s); first at {where}seq "
            f"{first.seq}: {first.message}"
        )


def verify_log(
    sealer: Sealer, progress: Progress | None = None
) -> VerifyReport:
    """Walk every event and snapshot of ``sealer``'s log; see :class:`VerifyReport`.

    ``progress(done, total)`` is called every few thousand events.
    """
    recorder, keys, database = sealer.recorder, sealer.keys, sealer.database
    sealer.tip()  # follow other writers' key changes first
    problems: list[Problem] = []

    def add(problem: Problem) -> None:
        if len(problems) < MAX_PROBLEMS:
            problems.append(problem)

    # The head as of one commit, and only the rows up to that commit's newest: rows a
    # writer appends while this runs belong to a later head (a live log verifies).
    meta, newest = recorder.chain_tail(1)
    top = newest[-1][0] if newest else 0
    start = meta.get("chain_start")
    chain_start = unpack_head(start) if start is not None else (0, GENESIS)
    recorded = meta.get("head")
    recorded_head = unpack_head(recorded) if recorded is not None else None
    total = recorder.count_events()
    checked = shredded = 0
    last_seq, last_hash = chain_start
    gaps, bad_ranges = sealer.chain.gaps(database, recorder.compacted())
    for broken_range in bad_ranges:
        add(Problem("chain", broken_range.seq, broken_range.reason))
    for item in walk(recorder.chain_rows(0, top), *chain_start, gaps, sealer.chain):
        if isinstance(item, Break):
            add(Problem("chain", item.seq, item.reason))
            continue
        seq, _ts_ms, tenant, kind, key_id, nonce, payload, _, row_hash = item
        last_seq, last_hash = seq, row_hash
        checked += 1
        try:
            cipher = keys.cipher(key_id)
        except KeyError:
            add(Problem("record", seq, f"its data key {key_id} does not exist"))
            cipher = None
        except CorruptKey as e:
            add(Problem("record", seq, e.message))
            cipher = None
        else:
            if cipher is None:
                shredded += 1
        if cipher is not None:
            try:
                cipher.decrypt(nonce, payload, record_aad(database, seq, tenant, kind))
            except CryptoError:
                add(Problem("record", seq, "authentication tag does not match"))
        if progress is not None and checked % PROGRESS_EVERY == 0:
            progress(checked, total)
    broken = head_break(recorded_head, last_seq, last_hash if last_seq else None)
    if broken is not None:
        add(Problem("chain", broken.seq, broken.reason))
    if progress is not None:
        progress(checked, total)

    snap_checked = snap_shredded = 0
    for row in recorder.snapshots():
        snap_checked += 1
        tenant, seq = row.tenant, row.seq
        if row.ciphertext is None:
            add(
                Problem(
                    "snapshot", seq, f"some of its {row.parts} parts are missing", tenant
                )
            )
            continue
        try:
            cipher = keys.cipher(row.key_id)
        except (KeyError, CorruptKey):
            add(
                Problem("snapshot", seq, f"its data key {row.key_id} is unusable", tenant)
            )
            continue
        if cipher is None:
            snap_shredded += 1
            continue
        try:
            cipher.decrypt(
                row.nonce,
                row.ciphertext,
                snapshot_aad(database, tenant, seq),
                what="snapshot",
            )
        except CryptoError:
            add(Problem("snapshot", seq, "authentication tag does not match", tenant))

    return VerifyReport(
        database=database,
        head=last_seq,
        events_checked=checked,
        events_shredded=shredded,
        snapshots_checked=snap_checked,
        snapshots_shredded=snap_shredded,
        problems=tuple(problems),
    )
