"""Compaction: physically drop the rows of crypto-shredded tenants and re-chain the rest.

Shredding (tenant deletion) makes a tenant's events unreadable at once by destroying
their data key; compaction then removes the rows themselves, the deletion markers (the
rows whose seq destroyed a key, so a deleted tenant's name leaves the store too) and
the destroyed key rows. The remaining rows after the first dropped seq get new
``prev_hash``/``hash`` values linking them to each other; the dropped seq ranges go to
the recorder's ``compacted`` ranges, the only gaps the chain accepts, and a marker event
records the compaction in the chain itself. The whole thing is one transaction under
the write lock, written against the recorder protocol: a crash leaves the log as it was
before, on every backend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from nocturnus.progress import Progress
from nocturnus.store.chain import GENESIS, Chain, unpack_head
from nocturnus.store.errors import ChainBroken
from nocturnus.store.recorder import Tip, WriteTransaction
from nocturnus.store.sealer import Append, Sealer
from nocturnus.store.verify import verify_log

CHUNK = 10_000


@dataclass(frozen=True, slots=True)
class Compaction:
    """What one compaction dropped and where the re-chained log now ends."""

    dropped_events: int
    dropped_keys: int
    tenants: tuple[str, ...]
    ranges: tuple[tuple[int, int], ...]
    rechained: int
    last_seq: int
    last_hash: bytes


def seq_ranges(seqs: list[int]) -> list[tuple[int, int]]:
    """Collapse sorted seqs into maximal (first, last) runs."""
    ranges: list[tuple[int, int]] = []
    for seq in seqs:
        if ranges and ranges[-1][1] == seq - 1:
            ranges[-1] = (ranges[-1][0], seq)
        else:
            ranges.append((seq, seq))
    return ranges


def compact_log(
    sealer: Sealer,
    marker_kind: str,
    marker_body: Callable[[Compaction], bytes],
    ts_ms: int,
    progress: Progress | None = None,
) -> Compaction | None:
    """Drop the rows of shredded tenants, re-chain, and append a marker event.

    The whole log is verified first, under the write lock: compaction re-computes
    hashes, so it must never launder tampering into a valid chain. The marker is a
    database-level event of ``marker_kind`` whose body ``marker_body`` builds from what
    was dropped. Afterwards the recorder reclaims the space, so no dropped byte stays
    in its files. Returns None when nothing is shredded (nothing changes then).

    :raises ChainBroken: the log does not verify; nothing is changed.
    """
    done: Compaction | None = None
    with sealer.maintenance() as tx:
        report = verify_log(sealer)
        if not report.ok:
            first = min(report.problems, key=lambda p: p.seq)
            raise ChainBroken(
                first.seq,
                f"{report.summary()}; compaction refused (it would re-chain over the "
                "damage)",
            )
        keys = tx.key_rows()
        destroyed = {row.key_id for row in keys if row.wrapped is None}
        markers = {row.destroyed_seq for row in keys if row.wrapped is None}
        if not destroyed:
            return None
        start = sealer.recorder.meta().get("chain_start")
        before = unpack_head(start) if start is not None else (0, GENESIS)
        seqs: list[int] = []
        for row in tx.chain_rows(0):
            if row[4] in destroyed or row[0] in markers:
                seqs.append(row[0])
            elif not seqs:
                before = (row[0], row[8])
        head = tx.head
        marker_seq = head.seq + 1
        ranges = seq_ranges(seqs)
        chain = sealer.chain
        tx.add_compacted(
            [
                (
                    first,
                    last,
                    marker_seq,
                    chain.range_mac(sealer.database, first, last, marker_seq),
                )
                for first, last in ranges
            ]
        )
        tx.delete_events(seqs)
        live = {row.tenant for row in keys if row.wrapped is not None}
        gone = {row.tenant for row in keys if row.key_id in destroyed} - live
        tx.delete_keys(destroyed)
        last = _rechain(tx, chain, seqs[0] if seqs else marker_seq, before, progress)
        done = Compaction(
            dropped_events=len(seqs),
            dropped_keys=len(destroyed),
            tenants=tuple(sorted(gone)),
            ranges=tuple(ranges),
            rechained=last[2],
            last_seq=last[0],
            last_hash=last[1],
        )
        marker = Append("", None, ts_ms, [(marker_kind, marker_body(done))])
        sealer.seal_after(tx, Tip(marker_seq - 1, done.last_hash), [marker])
    sealer.recorder.reclaim()
    return done


def _rechain(
    tx: WriteTransaction,
    chain: Chain,
    first_dropped: int,
    before: tuple[int, bytes],
    progress: Progress | None,
) -> tuple[int, bytes, int]:
    """Re-link every row after ``first_dropped`` to the kept row ``before`` it; return
    (last seq, its hash, rows re-linked)."""
    prev_seq, prev = before
    after = first_dropped
    rechained = 0
    while True:
        rows = list(tx.chain_rows(after, CHUNK))
        if not rows:
            return prev_seq, prev, rechained
        links = []
        for seq, ts_ms, tenant, kind, key_id, nonce, payload, _, _ in rows:
            h = chain.hash(prev, seq, ts_ms, tenant, kind, key_id, nonce, payload)
            links.append((prev, h, seq))
            prev, prev_seq = h, seq
        tx.rechain(links)
        rechained += len(rows)
        after = prev_seq
        if progress is not None:
            progress(rechained, rechained)
