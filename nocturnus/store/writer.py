"""The writer of one database in this process: group commit in one dedicated thread.

Requests put their :class:`~nocturnus.store.sealer.Append` on a queue and await a
future. The writer thread takes the first job, drains everything else queued, commits
all appends in ONE recorder transaction, then resolves every waiter with one
``call_soon_threadsafe`` per event loop, each only after that commit. While a commit
(and its fsync) runs, new jobs queue up for the next batch, so N concurrent writers
share one fsync instead of paying N. The store never runs on the event loop (rule 10).
Other processes may write the same database: the recorder's write lock and the
sealer's optimistic check arbitrate between them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from nocturnus.errors import NocturnusError
from nocturnus.store import distribution
from nocturnus.store.distribution import Distribution
from nocturnus.store.errors import StorageError, WriterClosed
from nocturnus.store.sealer import Append, Sealer

log = logging.getLogger("nocturnus.store")

T = TypeVar("T")

MAX_JOBS_PER_BATCH = 4096
MAX_EVENTS_PER_BATCH = 50_000


@dataclass(slots=True)
class _Job:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


Settled = Callable[["BaseException | None", "int | None"], None]
"""Told on the event loop, in commit order, how an append ended: ``(None, last seq)``
when stored, ``(error, head)`` when not (refused, or its batch failed), where ``head``
is the log's head after the failure (``None`` when the writer is gone and cannot
say)."""


@dataclass(slots=True)
class _Append(_Job):
    append: Append
    settled: Settled | None = None


@dataclass(slots=True)
class _Run(_Job):
    fn: Callable[[Sealer], Any]


@dataclass(slots=True)
class _Stop(_Job):
    pass


@dataclass(slots=True)
class WriterStats:
    """Counters for tests and metrics: how well group commit is batching.

    Written only by the writer thread; ``/metrics`` and ``/health`` read them.
    """

    commits: int = 0
    appends: int = 0
    records: int = 0
    failed_commits: int = 0
    largest_batch: int = 0
    # Requests (appends) sharing one commit, and the records they carried.
    batch_appends: Distribution = field(default_factory=distribution.sizes)
    batch_records: Distribution = field(default_factory=distribution.sizes)
    # Wall time of one batch's append: encryption, INSERTs, COMMIT and its fsync.
    commit_seconds: Distribution = field(default_factory=distribution.seconds)
    # time.monotonic() when the batch now committing started; None while idle.
    committing_since: float | None = None
    # time.time() of the last successful commit (0.0: none yet).
    last_commit_at: float = 0.0

    def commit_running_s(self, now: float | None = None) -> float:
        """How long the current commit has run (0.0 when idle): a stall shows here."""
        started = self.committing_since
        if started is None:
            return 0.0
        return max(0.0, (time.monotonic() if now is None else now) - started)


class Writer:
    """The writer of one database in this process: group commit.

    Runs the store in ONE dedicated thread (never on the event loop). The log is opened
    by ``open_log`` inside that thread, so its connection never crosses threads. Over a
    read-only log, given only :meth:`run` jobs, the same thread is a database's reader.
    (The head anchor of a SQLite log is written by the sealer itself, after every
    commit and before this thread answers any waiter: see :mod:`nocturnus.store.anchor`.)
    """

    def __init__(self, open_log: Callable[[], Sealer], *, name: str = "writer") -> None:
        self._open_log = open_log
        self._name = name
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._accepting = False
        self._running = False
        self.stats = WriterStats()

    @property
    def is_alive(self) -> bool:
        """True while the writer accepts and commits appends."""
        return (
            self._accepting
            and self._running
            and self._thread is not None
            and self._thread.is_alive()
        )

    @property
    def queued(self) -> int:
        """Jobs waiting for the writer thread (approximate)."""
        return self._jobs.qsize()

    async def start(self) -> None:
        """Start the thread and open the log in it.

        :raises NocturnusError: whatever opening the log raised (WrongMasterKey, ...).
        """
        if self._thread is not None:
            raise RuntimeError("Writer.start() called twice")
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._main,
            args=(ready,),
            name=f"nocturnus-{self._name}",
            daemon=True,
        )
        self._thread.start()
        await asyncio.wrap_future(ready)
        self._accepting = True

    async def append(self, append: Append, settled: Settled | None = None) -> range:
        """Return the seqs ``append`` got, once the batch holding it is durable.

        Queued synchronously when called, before the first await: appends are stored
        in the order of the calls. If the waiting task is cancelled, the append may
        still be committed; ``settled`` is told the outcome whether or not anyone
        still waits, before the waiter resumes, and in commit order across appends.

        :raises AppendConflict: its expected position no longer holds (others in the
            same batch still commit).
        :raises InvalidRecord: it is malformed (alone refused).
        :raises StorageError: the batch's commit failed (every waiter of it gets it).
        :raises WriterClosed: the writer is not running.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[range] = loop.create_future()
        self._put(_Append(loop, future, append, settled))
        return await future

    async def run(self, fn: Callable[[Sealer], T]) -> T:
        """Run ``fn(log)`` in the writer thread, after every append queued before it."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._put(_Run(loop, future, fn))
        return await future

    async def close(self) -> None:
        """Commit every append queued so far, then close the log and stop the thread."""
        if self._thread is None or not self._accepting:
            if self._thread is not None:
                await asyncio.to_thread(self._thread.join)
            return
        self._accepting = False
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._jobs.put(_Stop(loop, future))
        try:
            while not future.done():
                if not self._thread.is_alive():
                    # The thread died before reaching the stop job: answer it ourselves.
                    self._fail_queued()
                await asyncio.wait({future}, timeout=0.5)
            await future
        finally:
            await asyncio.to_thread(self._thread.join)

    def _put(self, job: _Job) -> None:
        # ``_running`` turns False in the thread's own ``finally`` before it ends, so
        # this is ``is_alive`` without asking the thread object (a lock) per write.
        if not (self._accepting and self._running):
            raise WriterClosed(f"the {self._name} is not running")
        self._jobs.put(job)

    # -- the writer thread ---------------------------------------------------------

    def _main(self, ready: concurrent.futures.Future[None]) -> None:
        try:
            event_log = self._open_log()
        except Exception as e:  # noqa: BLE001 - start() re-raises it to the caller
            ready.set_exception(e)
            return
        self._running = True
        ready.set_result(None)
        stop: _Stop | None = None
        try:
            while stop is None:
                jobs = [self._jobs.get()]
                while len(jobs) < MAX_JOBS_PER_BATCH:
                    try:
                        jobs.append(self._jobs.get_nowait())
                    except queue.Empty:
                        break
                try:
                    stop = self._process(event_log, jobs)
                except BaseException as e:
                    # A bug, not a storage error: answer everyone, then stop writing.
                    crash = StorageError(
                        f"the {self._name} crashed: {type(e).__name__}"
                    )
                    crash.__cause__ = e
                    _settle([(job, None, crash) for job in jobs])
                    raise
        except BaseException:
            log.exception("the %s thread crashed", self._name)
        finally:
            self._running = False
            self._accepting = False
            error: BaseException | None = None
            try:
                event_log.close()
            except Exception as e:  # noqa: BLE001 - close() re-raises it to the caller
                error = e
            self._fail_queued()
            if stop is not None:
                _settle([(stop, None, error)])

    def _process(self, event_log: Sealer, jobs: list[_Job]) -> _Stop | None:
        """Commit runs of appends as single transactions; run other jobs between them."""
        appends: list[_Append] = []
        for i, job in enumerate(jobs):
            if isinstance(job, _Append):
                appends.append(job)
                continue
            if appends:
                self._commit(event_log, appends)
                appends = []
            if isinstance(job, _Stop):
                for late in jobs[i + 1 :]:
                    _settle([(late, None, WriterClosed(f"the {self._name} is closed"))])
                return job
            assert isinstance(job, _Run)
            try:
                _settle([(job, job.fn(event_log), None)])
            except Exception as e:  # noqa: BLE001 - run() re-raises it to the caller
                _settle([(job, None, e)])
        if appends:
            self._commit(event_log, appends)
        return None

    def _commit(self, event_log: Sealer, jobs: list[_Append]) -> None:
        outcomes: list[tuple[_Job, Any, BaseException | None]] = []
        batch: list[_Append] = []
        events = 0
        for job in jobs:
            size = len(job.append.events)
            if batch and events + size > MAX_EVENTS_PER_BATCH:
                self._commit_batch(event_log, batch, outcomes)
                batch, events = [], 0
            batch.append(job)
            events += size
        if batch:
            self._commit_batch(event_log, batch, outcomes)
        if any(error is not None for _, _, error in outcomes):
            _settle(_with_head(event_log, outcomes))
        else:
            _settle(outcomes)

    def _commit_batch(
        self,
        event_log: Sealer,
        jobs: list[_Append],
        outcomes: list[tuple[_Job, Any, BaseException | None]],
    ) -> None:
        stats = self.stats
        started = stats.committing_since = time.monotonic()
        appends = [job.append for job in jobs]
        try:
            event_log.append(appends)
        except NocturnusError as e:
            stats.failed_commits += 1
            for append in appends:
                append.error = append.error or e
            outcomes.extend((job, None, job.append.error) for job in jobs)
            return
        except Exception as e:  # a bug below us: still answer every waiter
            stats.failed_commits += 1
            log.exception("append failed unexpectedly")
            err = StorageError(f"the {self._name} failed to commit: {type(e).__name__}")
            err.__cause__ = e
            for append in appends:
                append.error = append.error or err
            outcomes.extend((job, None, job.append.error) for job in jobs)
            return
        finally:
            stats.committing_since = None
        stored = [job for job in jobs if job.append.seqs is not None]
        stats.commit_seconds.observe(time.monotonic() - started)
        stats.batch_appends.observe(len(stored))
        records = sum(len(job.append.events) for job in stored)
        stats.batch_records.observe(records)
        stats.last_commit_at = time.time()
        stats.commits += 1
        stats.appends += len(stored)
        stats.records += records
        stats.largest_batch = max(stats.largest_batch, len(stored))
        outcomes.extend((job, job.append.seqs, job.append.error) for job in jobs)

    def _fail_queued(self) -> None:
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            if isinstance(job, _Stop):
                _settle([(job, None, None)])
            else:
                _settle([(job, None, WriterClosed(f"the {self._name} is closed"))])


def _with_head(
    event_log: Sealer, outcomes: list[tuple[_Job, Any, BaseException | None]]
) -> list[tuple[_Job, Any, BaseException | None]]:
    """The failed outcomes carry the head the log has after them (``None``: unknown)."""
    try:
        head: int | None = event_log.head()
    except NocturnusError:
        head = None
    return [
        (job, head, error) if error is not None else (job, result, error)
        for job, result, error in outcomes
    ]


def _settle(outcomes: list[tuple[_Job, Any, BaseException | None]]) -> None:
    """Resolve futures from the writer thread: one wake-up per event loop."""
    by_loop: dict[
        asyncio.AbstractEventLoop, list[tuple[_Job, Any, BaseException | None]]
    ] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[0].loop, []).append(outcome)
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, items)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass


def _resolve(items: list[tuple[_Job, Any, BaseException | None]]) -> None:
    for job, result, error in items:
        if type(job) is _Append and job.settled is not None:
            try:
                job.settled(error, result if error is not None else result[-1])
            except Exception:  # the waiters must still be answered
                log.exception("an append's settled callback failed")
        if job.future.done():
            continue
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)
