"""Offline maintenance of a data dir: replay, verify, snapshot, compact, key rotation.

The ``nocturnus`` CLI is a thin layer over these functions (tests call them directly).
``replay`` and ``verify`` only read, through read-only connections, so they are safe
while a server runs; the others write and expect the caller to hold the data dir's
:class:`~nocturnus.service.datadir.DataDirLock`. Long work reports ``progress(done,
total)``.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from collections.abc import Collection
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path

from nocturnus.engine.collector import collector_paused
from nocturnus.errors import StartupError
from nocturnus.progress import Progress
from nocturnus.service.codec import CODEC
from nocturnus.service.database import (
    DATABASE_LEVEL,
    Database,
    DatabaseState,
    apply_database_event,
    now_ms,
)
from nocturnus.service.databases import SYSTEM_DATABASE
from nocturnus.service.datadir import database_info, open_log
from nocturnus.service.events import Event, LogCompacted
from nocturnus.service.projection import TenantState
from nocturnus.service.replay import fold
from nocturnus.store.compact import Compaction, compact_log
from nocturnus.store.crypto import MASTER_KEY_FILE, MasterKey
from nocturnus.store.errors import StorageError, WrongMasterKey
from nocturnus.store.recorder import Store
from nocturnus.store.rotate import rotate_master_key as rotate_log
from nocturnus.store.sealer import Sealer
from nocturnus.store.verify import VerifyReport, verify_log

PROGRESS_EVERY = 20_000


def log_names(store: Store) -> list[str]:
    """Every database log in ``store``, ``_system`` first (registered or not)."""
    names = store.names()
    if SYSTEM_DATABASE in names:
        names.remove(SYSTEM_DATABASE)
        names.insert(0, SYSTEM_DATABASE)
    return names


# -- replay -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TenantSummary:
    """One tenant of a replayed database: facts, rules, last seq."""

    name: str
    facts: int
    rules: int
    last_seq: int


@dataclass(frozen=True, slots=True)
class ReplaySummary:
    """What a replay from seq 0 rebuilt."""

    database: str
    seq: int
    events: int
    shredded: int
    seconds: float
    database_rules: int
    tenants: tuple[TenantSummary, ...]
    processes: int = 1  # > 1: tenants were replayed in that many processes at once

    @property
    def facts(self) -> int:
        """Facts of every tenant."""
        return sum(t.facts for t in self.tenants)

    @property
    def rules(self) -> int:
        """Rules of every tenant (database rules apart)."""
        return sum(t.rules for t in self.tenants)

    def lines(self) -> list[str]:
        """What ``nocturnus replay`` prints: head line, totals, a line per tenant."""
        rate = self.events / self.seconds if self.seconds > 0 else 0.0
        head = (
            f"{self.database}: replayed {self.events} events to seq {self.seq} in "
            f"{self.seconds:.2f} s ({rate:,.0f} events/s; {self.shredded} shredded"
            + (f"; {self.processes} processes)" if self.processes > 1 else ")")
        )
        total = (
            f"tenants {len(self.tenants)}, facts {self.facts}, tenant rules "
            f"{self.rules}, database rules {self.database_rules}, seq {self.seq}"
        )
        rows = [
            f"  {t.name}: {t.facts} facts, {t.rules} rules, last seq {t.last_seq}"
            for t in self.tenants
        ]
        return [head, total, *rows]


def replay_log(
    event_log: Sealer,
    *,
    to_seq: int | None = None,
    progress: Progress | None = None,
    tenants: Collection[str] | None = None,
) -> tuple[DatabaseState, dict[str, TenantState], ReplaySummary]:
    """Rebuild every projection of a database from seq 0 (snapshots unused).

    Every tenant's visibility indexes are built too (``refresh``), so the figures
    cover everything a server needs before it can answer. ``tenants`` limits the
    replay to those tenants' events (``""``: the database-level ones); tenants never
    read each other's events, so their projections are the same either way.
    """
    started = time.perf_counter()
    head = event_log.head()
    until = head if to_seq is None else min(to_seq, head)
    with collector_paused():
        root, states, events, shredded, seq = _fold(event_log, until, progress, tenants)
    now = now_ms()
    with collector_paused():
        for state in states.values():
            state.refresh(now)
    if progress is not None:
        progress(until, until)
    summaries = tuple(
        TenantSummary(name, s.fact_count(), len(s.rules), s.last_seq)
        for name, s in sorted(states.items())
        if s.facts or len(s.rules) or s.created_at is not None
    )
    summary = ReplaySummary(
        database=event_log.database,
        seq=seq,
        events=events,
        shredded=shredded,
        seconds=time.perf_counter() - started,
        database_rules=len(root.rules),
        tenants=summaries,
    )
    return root, states, summary


def _fold(
    event_log: Sealer,
    until: int,
    progress: Progress | None,
    tenants: Collection[str] | None = None,
) -> tuple[DatabaseState, dict[str, TenantState], int, int, int]:
    root = DatabaseState()
    states: dict[str, TenantState] = {}

    def state_for(tenant: str) -> TenantState | None:
        if tenant == DATABASE_LEVEL:
            return None
        state = states.get(tenant)
        if state is None:
            state = states[tenant] = TenantState(tenant)
        return state

    def root_apply(seq: int, event: Event) -> None:
        apply_database_event(root, seq, event)

    events, shredded, seq = fold(
        event_log.entries(until_seq=until, tenants=tenants),
        state_for,
        root_apply,
        None if progress is None else (lambda _, seq: progress(seq, until)),
        PROGRESS_EVERY,
    )
    return root, states, events, shredded, seq


PARALLEL_MIN_EVENTS = 100_000
"""Below this many events a replay runs in one process (starting others costs more)."""


def replay_database(
    store: Store,
    key: MasterKey,
    name: str,
    *,
    to_seq: int | None = None,
    progress: Progress | None = None,
    workers: int = 1,
    parallel_min_events: int = PARALLEL_MIN_EVENTS,
) -> ReplaySummary:
    """Replay database ``name`` from seq 0 (read-only) and summarise the state.

    With ``workers`` > 1 and at least ``parallel_min_events`` events, the tenants
    are split into that many shares of about equal event counts, replayed at once
    in forked processes (this one takes the first share): tenants are independent,
    so each share rebuilds exactly the projections a single replay would, and only
    the summaries travel back. Every process reads, decrypts, decodes, applies and
    builds the indexes of its own tenants; the summary's ``seconds`` is the wall
    time of the whole (issue 3). Forking is meant for the CLI (a process running no
    other threads); a server loads its tenants one by one instead.
    """
    with open_log(store, key, name) as event_log:
        head = event_log.head()
        until = head if to_seq is None else min(to_seq, head)
        shares: list[list[str]] = []
        if workers > 1 and until >= max(parallel_min_events, 1):
            shares = _shares(event_log.tenant_events(until), workers)
        if len(shares) < 2:
            return replay_log(event_log, to_seq=until, progress=progress)[2]
    return _replay_shares(store, name, key, until, shares, progress)


def _shares(counts: dict[str, int], workers: int) -> list[list[str]]:
    """Split tenants into at most ``workers`` shares of about equal event counts."""
    totals = [0] * workers
    shares: list[list[str]] = [[] for _ in range(workers)]
    for tenant, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        lightest = totals.index(min(totals))
        shares[lightest].append(tenant)
        totals[lightest] += count
    return [names for names in shares if names]


def _replay_shares(
    store: Store,
    name: str,
    key: MasterKey,
    until: int,
    shares: list[list[str]],
    progress: Progress | None,
) -> ReplaySummary:
    """Replay each share in its own process (the first here) and add up the parts.

    Processes are forked (no state is pickled into them); a failed share fails the
    replay with its error's message.
    """
    started = time.perf_counter()
    context = multiprocessing.get_context("fork")
    children: list[tuple[BaseProcess, Connection]] = []
    try:
        for share in shares[1:]:
            receiver, sender = context.Pipe(duplex=False)
            child: BaseProcess = context.Process(
                target=_replay_child,
                args=(sender, store, name, key, until, share),
                daemon=True,
            )
            child.start()
            sender.close()
            children.append((child, receiver))
        parts = [_replay_share(store, name, key, until, shares[0], progress)]
        for child, receiver in children:
            try:
                status, value = receiver.recv()
            except EOFError:
                child.join()
                raise StorageError(
                    f"a replay process of database {name!r} died "
                    f"(exit code {child.exitcode})"
                ) from None
            if status != "ok":
                raise StorageError(f"replaying database {name!r}: {value}")
            parts.append(value)
    finally:
        for child, receiver in children:
            receiver.close()
            if child.is_alive():
                child.join(timeout=60)
            if child.is_alive():
                child.kill()
                child.join()
    return ReplaySummary(
        database=name,
        seq=max(part.seq for part in parts),
        events=sum(part.events for part in parts),
        shredded=sum(part.shredded for part in parts),
        seconds=time.perf_counter() - started,
        database_rules=sum(part.database_rules for part in parts),
        tenants=tuple(sorted((t for part in parts for t in part.tenants), key=_by_name)),
        processes=len(shares),
    )


def _by_name(tenant: TenantSummary) -> str:
    return tenant.name


def _replay_share(
    store: Store,
    name: str,
    key: MasterKey,
    until: int,
    tenants: list[str],
    progress: Progress | None = None,
) -> ReplaySummary:
    # The parent checked the chain's tail when it opened the log.
    event_log = Sealer.open(
        store.recorder(name, readonly=True), key, check_tail=None
    )
    try:
        return replay_log(event_log, to_seq=until, progress=progress, tenants=tenants)[2]
    finally:
        event_log.close()


def _replay_child(
    sender: Connection,
    store: Store,
    name: str,
    key: MasterKey,
    until: int,
    tenants: list[str],
) -> None:
    """A forked process's share: send back ("ok", summary) or ("error", message)."""
    try:
        result: tuple[str, object] = (
            "ok",
            _replay_share(store, name, key, until, tenants),
        )
    except BaseException as e:  # noqa: BLE001  # reported to the parent, which raises
        result = ("error", str(e) or type(e).__name__)
    sender.send(result)
    sender.close()


# -- verify -------------------------------------------------------------------------


def verify_database(
    store: Store, key: MasterKey, name: str, progress: Progress | None = None
) -> VerifyReport:
    """Check one log's whole chain, every GCM tag and every snapshot (read-only).

    The log is opened without its start-up tail check, so a broken chain is reported
    with every other problem instead of stopping at the first.
    """
    if not store.exists(name):
        raise StartupError(f"no database {name!r} in {store.where}")
    event_log = Sealer.open(store.recorder(name, readonly=True), key, check_tail=None)
    try:
        return verify_log(event_log, progress)
    finally:
        event_log.close()


# -- snapshot -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SnapshotResult:
    """What ``nocturnus snapshot`` did for one database."""

    database: str
    written: int
    tenants: int
    head: int


def snapshot_database(
    store: Store, key: MasterKey, name: str, progress: Progress | None = None
) -> SnapshotResult:
    """Write a snapshot of every live tenant of ``name`` now (offline: hold the lock)."""
    database_info(store, key, name)

    async def run() -> SnapshotResult:
        db: Database[DatabaseState] = Database(
            name,
            store,
            key,
            root_factory=DatabaseState,
            root_apply=apply_database_event,
            snapshot_every=0,
        )
        await db.open()
        written = 0
        try:
            names = sorted(db.tenant_names)
            for done, tenant in enumerate(names, start=1):
                await db.tenant(tenant)
                written += bool(await db.snapshot_tenant(tenant))
                db.evict(tenant)  # keep memory to one tenant at a time
                if progress is not None:
                    progress(done, len(names))
            return SnapshotResult(name, written, len(names), db.head)
        finally:
            await db.close()

    return asyncio.run(run())


# -- compact ------------------------------------------------------------------------


def compact_database(
    store: Store, key: MasterKey, name: str, progress: Progress | None = None
) -> Compaction | None:
    """Drop shredded tenants' rows from ``name`` and re-chain (offline: hold the lock).

    Returns None when nothing was shredded (the file is left untouched).

    :raises ChainBroken: the log does not verify; compaction refuses to re-chain it.
    """
    if name != SYSTEM_DATABASE:
        database_info(store, key, name)

    def marker(done: Compaction) -> bytes:
        first = done.ranges[0][0] if done.ranges else 0
        last = done.ranges[-1][1] if done.ranges else 0
        return CODEC.encode(
            LogCompacted(
                dropped_events=done.dropped_events,
                dropped_keys=done.dropped_keys,
                tenants=len(done.tenants),
                first_dropped_seq=first,
                last_dropped_seq=last,
                rechained=done.rechained,
            )
        )

    # No tail check at open: compaction verifies the whole log and says why it refuses.
    event_log = Sealer.open(store.recorder(name), key, check_tail=None)
    try:
        return compact_log(event_log, LogCompacted.kind, marker, now_ms(), progress)
    finally:
        event_log.close()


# -- master key rotation ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rotation:
    """What a master key rotation did to one database's data keys."""

    database: str
    rewrapped: int
    already: bool


def rotate_master_key(
    store: Store,
    old_key: MasterKey,
    new_key: MasterKey,
    progress: Progress | None = None,
) -> list[Rotation]:
    """Re-wrap every data key of every log under ``new_key``; events are untouched.

    Each file changes in one transaction. A file already under ``new_key`` is skipped,
    so after an interruption the same command finishes the job.

    :raises WrongMasterKey: a file opens under neither key.
    """
    names = log_names(store)
    if not names:
        raise StartupError(f"no database logs in {store.where}")
    done: list[Rotation] = []
    for count, name in enumerate(names, start=1):
        try:
            event_log = Sealer.open(store.recorder(name), old_key, check_tail=None)
        except WrongMasterKey:
            try:
                Sealer.open(store.recorder(name), new_key, check_tail=None).close()
            except WrongMasterKey:
                raise WrongMasterKey(
                    f"database {name!r} ({store.where}) opens under neither the "
                    "current nor the new master key"
                ) from None
            done.append(Rotation(name, 0, already=True))
        else:
            try:
                done.append(Rotation(name, rotate_log(event_log, new_key), False))
            finally:
                event_log.close()
        if progress is not None:
            progress(count, len(names))
    return done


def write_key_file(data_dir: Path, key_text: str) -> Path:
    """Atomically replace ``data_dir/master.key`` with ``key_text`` (mode 0600)."""
    path = Path(data_dir) / MASTER_KEY_FILE
    tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, key_text.strip().encode("ascii") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path
