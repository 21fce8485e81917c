"""The group-commit writer: batching, durability, ordering, failure fan-out."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from nocturnus.store.crypto import MasterKey
from nocturnus.store.errors import SeqConflict, StorageError, WriterClosed
from nocturnus.store.log import EventLog
from nocturnus.store.record import LogRecord
from nocturnus.store.writer import Writer

Record = Callable[..., LogRecord]


def opener(path: Path, key: MasterKey) -> Callable[[], EventLog]:
    return lambda: EventLog.open(path, "acme", key)


def test_group_commit_shares_transactions(
    tmp_path: Path, master_key: MasterKey, record: Record
) -> None:
    path = tmp_path / "acme.db"
    n_writers, per_writer = 32, 10

    async def main() -> Writer:
        writer = Writer(opener(path, master_key))
        await writer.start()
        seqs = iter(range(1, n_writers * per_writer + 1))

        async def client(i: int) -> None:
            for _ in range(per_writer):
                # No await between taking a seq and queueing it: queue order == seq order.
                await writer.append([record(next(seqs), tenant=f"t{i % 4}")])

        await asyncio.gather(*(client(i) for i in range(n_writers)))
        await writer.close()
        return writer

    writer = asyncio.run(main())
    total = n_writers * per_writer
    assert writer.stats.appends == total
    assert writer.stats.commits < total / 4, writer.stats
    assert writer.stats.largest_batch > 1
    log = EventLog.open(path, "acme", master_key)
    try:
        assert [r.seq for r in log.read()] == list(range(1, total + 1))
        assert log.verify().ok
    finally:
        log.close()


def test_close_flushes_queued_appends(
    tmp_path: Path, master_key: MasterKey, record: Record
) -> None:
    path = tmp_path / "acme.db"

    async def main() -> None:
        writer = Writer(opener(path, master_key))
        await writer.start()
        pending = [
            asyncio.ensure_future(writer.append([record(s)])) for s in range(1, 51)
        ]
        await asyncio.sleep(0)  # every append is queued, none awaited yet
        await writer.close()
        assert all(f.done() and f.exception() is None for f in pending)
        assert not writer.is_alive
        with pytest.raises(WriterClosed):
            await writer.append([record(51)])

    asyncio.run(main())
    log = EventLog.open(path, "acme", master_key)
    try:
        assert log.head() == 50
    finally:
        log.close()


def test_run_is_ordered_with_appends_and_runs_in_the_writer_thread(
    tmp_path: Path, master_key: MasterKey, record: Record
) -> None:
    async def main() -> None:
        writer = Writer(opener(tmp_path / "acme.db", master_key))
        await writer.start()
        appended = asyncio.ensure_future(writer.append([record(1), record(2)]))
        await asyncio.sleep(0)  # let the append queue itself
        head, thread = await writer.run(lambda log: (log.head(), threading.get_ident()))
        assert head == 2 and thread != threading.get_ident()
        await appended
        assert await writer.run(lambda log: log.save_snapshot("acme", 2, b"s")) is True
        got = await writer.run(lambda log: [r.seq for r in log.read()])
        assert got == [1, 2]
        with pytest.raises(ZeroDivisionError):
            await writer.run(lambda log: 1 / 0)
        assert writer.is_alive  # a failing run() does not stop the writer
        await writer.close()

    asyncio.run(main())


def test_seq_conflict_fails_only_its_own_append(
    tmp_path: Path, master_key: MasterKey, record: Record
) -> None:
    async def main() -> None:
        writer = Writer(opener(tmp_path / "acme.db", master_key))
        await writer.start()
        await writer.append([record(1)])
        results = await asyncio.gather(
            writer.append([record(2)]),
            writer.append([record(2)]),  # duplicate: refused alone
            writer.append([record(3), record(4)]),
            return_exceptions=True,
        )
        assert results[0] is None and results[2] is None
        assert isinstance(results[1], SeqConflict) and results[1].seq == 2
        assert await writer.run(lambda log: log.head()) == 4
        await writer.close()

    asyncio.run(main())


class FailingLog(EventLog):
    fail_next = False

    def append(self, records: Sequence[LogRecord]) -> None:
        if FailingLog.fail_next:
            FailingLog.fail_next = False
            raise StorageError("disk on fire")
        super().append(records)


def test_failed_commit_reaches_every_waiter_of_the_batch(
    tmp_path: Path, master_key: MasterKey, record: Record
) -> None:
    async def main() -> None:
        writer = Writer(
            lambda: FailingLog.open(tmp_path / "acme.db", "acme", master_key)
        )
        await writer.start()
        gate = asyncio.Event()
        started = asyncio.Event()

        def block(log: EventLog) -> None:
            # Hold the writer thread so the next appends pile up into one batch.
            asyncio.run_coroutine_threadsafe(_set(started), loop).result()
            asyncio.run_coroutine_threadsafe(gate.wait(), loop).result()
            FailingLog.fail_next = True

        loop = asyncio.get_running_loop()
        blocker = asyncio.ensure_future(writer.run(block))
        await started.wait()
        batch = [asyncio.ensure_future(writer.append([record(s)])) for s in (1, 2, 3)]
        await asyncio.sleep(0)
        gate.set()
        await blocker
        results = await asyncio.gather(*batch, return_exceptions=True)
        assert all(
            isinstance(r, StorageError) and "disk on fire" in str(r) for r in results
        )
        assert writer.stats.failed_commits == 1
        # The writer keeps going and the same seqs can be written again.
        await writer.append([record(1)])
        assert await writer.run(lambda log: log.head()) == 1
        await writer.close()

    asyncio.run(main())


async def _set(event: asyncio.Event) -> None:
    event.set()


def test_start_reports_open_errors(
    tmp_path: Path, master_key: MasterKey, record: Record
) -> None:
    from nocturnus.store.errors import WrongMasterKey

    async def main() -> None:
        writer = Writer(opener(tmp_path / "acme.db", master_key))
        await writer.start()
        await writer.append([record(1)])
        await writer.close()
        wrong = Writer(opener(tmp_path / "acme.db", MasterKey.generate()))
        with pytest.raises(WrongMasterKey):
            await wrong.start()
        assert not wrong.is_alive
        with pytest.raises(WriterClosed):
            await wrong.append([record(2)])

    asyncio.run(main())


def test_a_crashed_writer_answers_everyone_and_refuses_more(
    tmp_path: Path, master_key: MasterKey, record: Record
) -> None:
    async def main() -> None:
        writer = Writer(opener(tmp_path / "acme.db", master_key))
        await writer.start()
        with pytest.raises(StorageError, match="crashed"):
            await writer.append(None)  # type: ignore[arg-type]  # a caller bug
        await asyncio.to_thread(writer._thread.join, 5)  # type: ignore[union-attr]
        assert not writer.is_alive
        with pytest.raises(WriterClosed):
            await writer.append([record(1)])
        await asyncio.wait_for(writer.close(), 5)

    asyncio.run(main())
