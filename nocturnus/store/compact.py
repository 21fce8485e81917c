"""Compaction: physically drop the rows of crypto-shredded tenants and re-chain the rest.

Shredding (tenant deletion) makes a tenant's events unreadable at once by destroying
their data key; compaction then removes the rows themselves, the ``tenant_deleted``
markers (so a deleted tenant's name leaves the file too) and the destroyed key rows.
The remaining rows after the first dropped seq get new ``prev_hash``/``hash`` values
linking them to each other; the dropped seq ranges go to the ``compacted`` table, the
only gaps the chain accepts, and the caller appends a marker event recording the
compaction in the chain itself. The whole thing is one transaction: a crash leaves the
log as it was before.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from nocturnus.store.chain import event_hash

TENANT_DELETED = "tenant_deleted"
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


def drop_shredded(
    conn: sqlite3.Connection,
    chain_start: tuple[int, bytes],
    marker_seq: int,
    progress: Callable[[int, int], None] | None = None,
) -> Compaction | None:
    """Drop shredded rows and re-chain, inside the caller's open transaction.

    Returns None (changing nothing) when no row is shredded. ``marker_seq`` is the seq
    the caller's marker event will take; it is recorded with the dropped ranges.
    """
    destroyed = [
        key_id
        for (key_id,) in conn.execute(
            "SELECT key_id FROM data_keys WHERE wrapped IS NULL ORDER BY key_id"
        )
    ]
    marks = ",".join("?" * len(destroyed)) or "NULL"
    dropped = conn.execute(
        f"SELECT seq, tenant FROM events WHERE key_id IN ({marks}) OR kind = ?"
        " ORDER BY seq",
        (*destroyed, TENANT_DELETED),
    ).fetchall()
    if not dropped and not destroyed:
        return None
    seqs = [seq for seq, _ in dropped]
    ranges = seq_ranges(seqs)
    conn.executemany(
        "INSERT INTO compacted (first_seq, last_seq, compacted_seq) VALUES (?, ?, ?)",
        [(first, last, marker_seq) for first, last in ranges],
    )
    conn.executemany("DELETE FROM events WHERE seq = ?", [(s,) for s in seqs])
    gone = conn.execute(
        f"SELECT DISTINCT tenant FROM data_keys WHERE key_id IN ({marks})"
        " AND tenant NOT IN (SELECT tenant FROM data_keys WHERE wrapped IS NOT NULL)",
        destroyed,
    ).fetchall()
    conn.execute(f"DELETE FROM data_keys WHERE key_id IN ({marks})", destroyed)

    first_dropped = seqs[0] if seqs else marker_seq
    row = conn.execute(
        "SELECT seq, hash FROM events WHERE seq < ? ORDER BY seq DESC LIMIT 1",
        (first_dropped,),
    ).fetchone()
    prev_seq, prev = (row[0], row[1]) if row is not None else chain_start
    total = conn.execute(
        "SELECT count(*) FROM events WHERE seq > ?", (first_dropped,)
    ).fetchone()[0]
    rechained = 0
    while True:
        rows = conn.execute(
            "SELECT seq, ts_ms, tenant, kind, key_id, nonce, payload FROM events"
            " WHERE seq > ? ORDER BY seq LIMIT ?",
            (max(prev_seq, first_dropped), CHUNK),
        ).fetchall()
        if not rows:
            break
        updates = []
        for seq, ts_ms, tenant, kind, key_id, nonce, payload in rows:
            h = event_hash(prev, seq, ts_ms, tenant, kind, key_id, nonce, payload)
            updates.append((prev, h, seq))
            prev, prev_seq = h, seq
        conn.executemany(
            "UPDATE events SET prev_hash = ?, hash = ? WHERE seq = ?", updates
        )
        rechained += len(rows)
        if progress is not None:
            progress(rechained, total)
    return Compaction(
        dropped_events=len(seqs),
        dropped_keys=len(destroyed),
        tenants=tuple(sorted(t for (t,) in gone)),
        ranges=tuple(ranges),
        rechained=rechained,
        last_seq=prev_seq,
        last_hash=prev,
    )
