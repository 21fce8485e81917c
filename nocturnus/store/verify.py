"""Full verification of one log: chain, every GCM tag, every snapshot, the head.

Verification reports instead of raising, so an operator sees every problem at once
(up to :data:`MAX_PROBLEMS`) and the first bad seq.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from nocturnus.store.chain import Break, head_break, walk
from nocturnus.store.errors import CorruptKey, CryptoError
from nocturnus.store.keys import KeyRing
from nocturnus.store.record import record_aad, snapshot_aad
from nocturnus.store.snapshots import snapshot_ciphertext

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
    conn: sqlite3.Connection,
    database: str,
    keys: KeyRing,
    *,
    chain_start: tuple[int, bytes],
    recorded_head: tuple[int, bytes] | None,
    gaps: Mapping[int, int] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> VerifyReport:
    """Walk every event and snapshot of the log behind ``conn``; see :class:`VerifyReport`."""
    problems: list[Problem] = []

    def add(problem: Problem) -> None:
        if len(problems) < MAX_PROBLEMS:
            problems.append(problem)

    total = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    rows = conn.execute(
        "SELECT seq, ts_ms, tenant, kind, key_id, nonce, payload, prev_hash, hash"
        " FROM events ORDER BY seq"
    )
    checked = shredded = 0
    last_seq, last_hash = chain_start
    for item in walk(rows, *chain_start, gaps):
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
    for tenant, seq, key_id, nonce, payload, parts in conn.execute(
        "SELECT tenant, seq, key_id, nonce, payload, parts FROM snapshots"
        " ORDER BY tenant, seq"
    ).fetchall():
        snap_checked += 1
        whole = snapshot_ciphertext(conn, tenant, seq, payload, parts)
        if whole is None:
            add(Problem("snapshot", seq, f"some of its {parts} parts are missing", tenant))
            continue
        try:
            cipher = keys.cipher(key_id)
        except (KeyError, CorruptKey):
            add(Problem("snapshot", seq, f"its data key {key_id} is unusable", tenant))
            continue
        if cipher is None:
            snap_shredded += 1
            continue
        try:
            cipher.decrypt(
                nonce, whole, snapshot_aad(database, tenant, seq), what="snapshot"
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
