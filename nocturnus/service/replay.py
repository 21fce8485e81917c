"""Rebuilding tenant projections from the log: newest snapshot + tail, or from seq 0.

Both paths fold events through the projection's one door for logged events,
``projection.apply_fields`` (:func:`fold`), which runs the appliers live writes run; a
snapshot only replaces the prefix of the log it covers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

from nocturnus.engine.collector import collector_paused
from nocturnus.progress import Progress
from nocturnus.service import snapshot_format
from nocturnus.service.codec import CODEC, Fields
from nocturnus.service.events import Event
from nocturnus.service.projection import TenantState, apply_fields, reader
from nocturnus.store.record import LogRecord, RecordTuple
from nocturnus.store.sealer import Sealer

log = logging.getLogger("nocturnus.service")

def fold(
    entries: Iterable[RecordTuple | LogRecord],
    state_for: Callable[[str], TenantState | None],
    root_apply: Callable[[int, Event], None] | None = None,
    progress: Progress | None = None,
    progress_every: int = 20_000,
) -> tuple[int, int, int]:
    """Apply logged entries in seq order; return (entries, shredded, last seq).

    ``entries`` are ``Sealer.entries()`` tuples (or records, which unpack alike).
    ``state_for(tenant)`` names the projection an entry of ``tenant`` goes to, asked
    once per tenant; None sends the decoded event to ``root_apply`` (database-level
    entries). Shredded entries (``body=None``) belong to a deleted incarnation and
    are skipped.

    A tenant's event enters its projection through its one door for logged events,
    ``apply_fields``, given the field values its ``reader`` reads from the body.
    ``progress(entries, seq)`` is called every ``progress_every`` entries.
    """
    states: dict[str, TenantState | None] = {}

    def state_of(tenant: str) -> TenantState | None:
        state = states[tenant] = state_for(tenant)
        return state

    if progress is None:
        return _fold(entries, states, state_of, root_apply)
    count = shredded = seq = 0
    it = iter(entries)
    while True:
        done, skipped, last = _fold(
            islice(it, progress_every), states, state_of, root_apply
        )
        if not done:
            return count, shredded, seq
        count, shredded, seq = count + done, shredded + skipped, last
        if done == progress_every:
            progress(count, seq)


def _fold(
    entries: Iterable[RecordTuple | LogRecord],
    states: dict[str, TenantState | None],
    state_of: Callable[[str], TenantState | None],
    root_apply: Callable[[int, Event], None] | None,
) -> tuple[int, int, int]:
    """:func:`fold`'s loop, without progress; ``states`` caches ``state_of``.

    Each tenant entry goes through ``apply_fields``, with the fields the kind's
    ``reader`` (looked up once per kind) reads from its body.
    """
    readers: dict[str, Callable[[bytes], Fields]] = {}
    count = shredded = seq = 0
    tenant: str | None = None
    state: TenantState | None = None
    for seq, _, name, kind, body in entries:
        count += 1
        if body is None:
            shredded += 1
            continue
        if name != tenant:
            tenant = name
            state = states.get(name, _UNKNOWN)
            if state is _UNKNOWN:
                state = state_of(name)
        if state is None:
            if root_apply is not None:
                root_apply(seq, CODEC.decode(kind, body))
            continue
        read = readers.get(kind)
        if read is None:
            read = readers[kind] = reader(kind)
        apply_fields(state, seq, kind, read(body))
    return count, shredded, seq


_UNKNOWN: Any = object()


def replay_tenant(
    name: str, records: Iterable[RecordTuple | LogRecord], state: TenantState | None = None
) -> TenantState:
    """Fold a tenant's logged events into ``state`` (a fresh one by default).

    Shredded records (``body=None``) are skipped: they belong to a deleted incarnation.
    """
    target = TenantState(name) if state is None else state
    with collector_paused():
        fold(records, lambda _: target)
    return target


@dataclass(frozen=True, slots=True)
class TenantLog:
    """What the log holds for one tenant: its newest snapshot and the events after it."""

    snapshot: tuple[int, bytes] | None
    tail: Sequence[RecordTuple]


def read_tenant(event_log: Sealer, name: str) -> TenantLog:
    """Read the newest snapshot of ``name`` and its tail (run in the log's thread)."""
    found = event_log.latest_snapshot(name)
    after = found[0] if found is not None else 0
    return TenantLog(found, list(event_log.entries(after, tenant=name)))


def restore_tenant(name: str, stored: TenantLog) -> TenantState | None:
    """Snapshot + tail; None when the snapshot cannot be read (replay from seq 0 then).

    An unreadable snapshot is logged loudly, never used partially.
    """
    if stored.snapshot is None:
        return replay_tenant(name, stored.tail)
    seq, body = stored.snapshot
    try:
        with collector_paused():
            state = snapshot_format.decode(name, body)
    except snapshot_format.SnapshotFormatError as e:
        log.error("%s (seq %d); replaying tenant %r from seq 0 instead", e, seq, name)
        return None
    return replay_tenant(name, stored.tail, state)
