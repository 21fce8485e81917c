"""Rebuilding tenant projections from the log: newest snapshot + tail, or from seq 0.

Both paths fold events through the same appliers that live writes use (:func:`fold`);
a snapshot only replaces the prefix of the log it covers.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from typing import Any

from nocturnus.service import snapshot
from nocturnus.service.events import FIELD_READERS, Event, decode
from nocturnus.service.tenant import FIELD_APPLIERS, TenantState, apply
from nocturnus.store.record import Entry, LogRecord
from nocturnus.store.sealer import Sealer

log = logging.getLogger("nocturnus.service")

_gc_lock = threading.Lock()
_gc_pauses = 0
_gc_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a projection is being built.

    Replay allocates millions of small acyclic objects; every few thousand of them
    would start a collection that walks the whole growing heap (10-15 % of replay
    time). Reference counting still frees everything. Nested and concurrent pauses
    (tenants loading in several threads) re-enable the collector after the last one.
    """
    global _gc_pauses, _gc_was_enabled
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()


def fold(
    entries: Iterable[Entry | LogRecord],
    state_for: Callable[[str], TenantState | None],
    root_apply: Callable[[int, Event], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    progress_every: int = 20_000,
) -> tuple[int, int, int]:
    """Apply logged entries in seq order; return (entries, shredded, last seq).

    ``entries`` are ``Sealer.entries()`` tuples (or records, which unpack alike).
    ``state_for(tenant)`` names the projection an entry of ``tenant`` goes to, asked
    once per tenant; None sends the decoded event to ``root_apply`` (database-level
    entries). Shredded entries (``body=None``) belong to a deleted incarnation and
    are skipped.

    Every event goes through the appliers live writes use: the hot kinds
    (``FIELD_APPLIERS``) get their fields read straight from the body
    (``FIELD_READERS``), which for these kinds is exactly ``apply(state, seq,
    decode(kind, body))`` without building the event; every other kind, and a body
    the reader declines (an old version, missing fields), takes ``apply`` itself.
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
    entries: Iterable[Entry | LogRecord],
    states: dict[str, TenantState | None],
    state_of: Callable[[str], TenantState | None],
    root_apply: Callable[[int, Event], None] | None,
) -> tuple[int, int, int]:
    """:func:`fold`'s loop, without progress; ``states`` caches ``state_of``."""
    hot = {kind: (FIELD_READERS[kind], applier) for kind, applier in FIELD_APPLIERS.items()}
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
                root_apply(seq, decode(kind, body))
            continue
        fast = hot.get(kind)
        if fast is not None:
            values = fast[0](body)
            if values is not None:
                fast[1](state, *values)
                state.last_seq = seq
                continue
        apply(state, seq, decode(kind, body))
    return count, shredded, seq


_UNKNOWN: Any = object()


def replay_tenant(
    name: str, records: Iterable[Entry | LogRecord], state: TenantState | None = None
) -> TenantState:
    """Fold a tenant's logged events into ``state`` (a fresh one by default).

    Shredded records (``body=None``) are skipped: they belong to a deleted incarnation.
    """
    target = TenantState(name) if state is None else state
    with gc_paused():
        fold(records, lambda _: target)
    return target


@dataclass(frozen=True, slots=True)
class TenantLog:
    """What the log holds for one tenant: its newest snapshot and the events after it."""

    snapshot: tuple[int, bytes] | None
    tail: Sequence[Entry]


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
        with gc_paused():
            state = snapshot.decode(name, body)
    except snapshot.SnapshotFormatError as e:
        log.error("%s (seq %d); replaying tenant %r from seq 0 instead", e, seq, name)
        return None
    return replay_tenant(name, stored.tail, state)
