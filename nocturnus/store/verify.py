"""Full verification of one log: chain, every GCM tag, every snapshot, the head (also
against the head anchor kept outside a SQLite log), and every destroyed data key.

Verification reports instead of raising, so an operator sees every problem at once
(up to :data:`MAX_PROBLEMS`) and the first bad seq. It reads through the recorder
protocol and the sealer's keys, so it is the same check on every backend.

A destroyed key must be explained by the deletion that destroyed it (issue 14): a
tenant's deletion is sealed under the database-level key (:class:`~nocturnus.store.
sealer.Append` ``ends_stream``) and the key row records that append's last seq as
``destroyed_seq``. The ``wrapped`` and ``destroyed_seq`` columns are not chained, so a
key set to NULL by hand would otherwise read as shredded: the tenant silently empty.
The deletion rows are chained, so only a master-key holder can make one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from nocturnus.progress import Progress
from nocturnus.store.anchor import AnchorDamaged
from nocturnus.store.chain import GENESIS, Break, head_break, unpack_head, walk
from nocturnus.store.errors import CorruptKey, CryptoError
from nocturnus.store.record import record_aad, snapshot_aad
from nocturnus.store.recorder import KeyRow, SnapshotRow, Tip
from nocturnus.store.sealer import Sealer

MAX_PROBLEMS = 100
PROGRESS_EVERY = 5_000


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding: where (seq, and tenant for snapshots) and what."""

    kind: str  # "chain" | "record" | "key" | "snapshot"
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
    def damaged_tenants(self) -> dict[str, Problem]:
        """Tenant -> its first record or key problem: the tenants whose history cannot
        be read as written. A snapshot problem is not one (the tenant replays from its
        events instead); a missing row names no tenant."""
        damaged: dict[str, Problem] = {}
        for p in sorted(self.problems, key=lambda p: p.seq):
            if p.tenant is not None and p.kind in ("record", "key"):
                damaged.setdefault(p.tenant, p)
        return damaged

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

    # The anchor first: a commit landing before the head is read only puts it ahead.
    anchored: Tip | None = None
    if sealer.anchor is not None:
        try:
            anchored = sealer.anchor.read()
        except AnchorDamaged as e:
            add(Problem("chain", 0, e.message))
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
    key_rows = recorder.key_rows()
    database_keys = {row.key_id for row in key_rows if not row.tenant}
    # seq -> tenant of each row a tenant's deletion sealed under the database-level key
    deletions: dict[int, str] = {}
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
            add(Problem("record", seq, f"its data key {key_id} does not exist", tenant))
            cipher = None
        except CorruptKey as e:
            add(Problem("record", seq, e.message, tenant))
            cipher = None
        else:
            if cipher is None:
                shredded += 1
        if cipher is not None:
            try:
                cipher.decrypt(nonce, payload, record_aad(database, seq, tenant, kind))
            except CryptoError:
                add(Problem("record", seq, "authentication tag does not match", tenant))
        if tenant and key_id in database_keys:
            deletions[seq] = tenant
        if progress is not None and checked % PROGRESS_EVERY == 0:
            progress(checked, total)
    broken = head_break(recorded_head, last_seq, last_hash if last_seq else None)
    if broken is not None:
        add(Problem("chain", broken.seq, broken.reason))
    if sealer.anchor is not None:
        lost = sealer.anchor.behind(anchored, Tip(*(recorded_head or (0, GENESIS))))
        if lost is not None:
            add(Problem("chain", lost.seq, lost.reason))
    if progress is not None:
        progress(checked, total)
    for problem in unexplained_keys(key_rows, deletions, top):
        add(problem)

    snap_checked = snap_shredded = 0
    for row in recorder.snapshots():
        snap_checked += 1
        tenant, seq = row.tenant, row.seq
        if row.ciphertext is None:
            if not _still_partial(sealer, row):
                continue  # replaced by a newer snapshot while this ran (a live log)
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


def unexplained_keys(
    keys: list[KeyRow], deletions: dict[int, str], top: int
) -> Iterator[Problem]:
    """A :class:`Problem` for each destroyed data key no deletion explains.

    ``deletions`` maps the seq of every stored deletion row to its tenant. A tenant's
    key is explained when its ``destroyed_seq`` is such a row of the same tenant, not
    before the key was made, and no other key claims the same row; a database-level
    key is never destroyed. Keys destroyed after ``top`` (the last seq walked) belong
    to a later head: a deletion committed while the walk ran.
    """
    claimed: set[int] = set()
    for row in keys:
        seq = row.destroyed_seq
        if row.wrapped is not None or (seq is not None and seq > top):
            continue
        who = f"data key {row.key_id} of tenant {row.tenant!r}" if row.tenant else (
            f"the database-level data key {row.key_id}"
        )
        if not row.tenant:
            why = "a database-level key is never destroyed"
        elif seq is None or deletions.get(seq) != row.tenant:
            why = "no tenant deletion in the log destroyed it"
        elif seq < row.created_seq:
            why = f"the deletion at seq {seq} came before the key was made"
        elif seq in claimed:
            why = f"the deletion at seq {seq} destroyed another key"
        else:
            claimed.add(seq)
            continue
        yield Problem(
            "key",
            seq if seq is not None else row.created_seq,
            f"{who} is missing: {why} (it was removed outside Nocturnus; the "
            "tenant's events and snapshots under it cannot be read)",
            row.tenant,
        )


def _still_partial(sealer: Sealer, row: SnapshotRow) -> bool:
    """Whether a snapshot read with parts missing is still stored that way: a writer
    keeping only the newest snapshots removes an old one with its parts in one
    transaction, which a verification reading it part by part may see half of."""
    return any(
        stored.seq == row.seq and stored.ciphertext is None
        for stored in sealer.recorder.snapshots(row.tenant)
    )
