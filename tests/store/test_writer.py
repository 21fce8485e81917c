"""The group-commit writer: batching, durability, ordering, failure fan-out."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from nocturnus.store.crypto import MasterKey
from nocturnus.store.errors import AppendConflict, StorageError, WriterClosed
from nocturnus.store.sealer import Append, Sealer
from nocturnus.store.sqlite import SqliteStore
from nocturnus.store.verify import verify_log
from nocturnus.store.writer import Writer
from tests.store.conftest import TS0


def opener(path: Path, key: MasterKey, cls: type[Sealer] = Sealer) -> Callable[[], Sealer]:
    return lambda: cls.open(SqliteStore(path).recorder("acme"), key)


def event(tenant: str = "acme", expected: int | Append | None = None) -> Append:
    return Append(tenant, expected, TS0, [("fact_told", b'{"n": 1}')])


def test_group_commit_shares_transactions(tmp_path: Path, master_key: MasterKey) -> None:
    n_writers, per_writer = 32, 10
    async def main() -> Writer:
        writer = Writer(opener(tmp_path, master_key))
        await writer.start()

        async def client(i: int) -> None:
            for _ in range(per_writer):
                await writer.append(event(f"t{i % 4}"))

        await asyncio.gather(*(client(i) for i in range(n_writers)))
        await writer.close()
        return writer

    writer = asyncio.run(main())
    total = n_writers * per_writer
    assert writer.stats.appends == total
    assert writer.stats.commits < total / 4, writer.stats
    assert writer.stats.largest_batch > 1
    log = opener(tmp_path, master_key)()
    try:
        assert [r.seq for r in log.read()] == list(range(1, total + 1))
        assert verify_log(log).ok
    finally:
        log.close()


def test_appends_of_one_stream_chain_within_a_batch(tmp_path: Path, master_key: MasterKey) -> None:
    """Decisions made on events not yet stored follow them (issue 15): no conflict."""

    async def main() -> list[range]:
        writer = Writer(opener(tmp_path, master_key))
        await writer.start()
        previous: int | Append = 0
        pending = []
        for _ in range(20):
            append = event("t", previous)
            pending.append(asyncio.ensure_future(writer.append(append)))
            previous = append
        await asyncio.sleep(0)
        seqs = await asyncio.gather(*pending)
        await writer.close()
        return seqs

    assert [s.start for s in asyncio.run(main())] == list(range(1, 21))


def test_close_flushes_queued_appends(tmp_path: Path, master_key: MasterKey) -> None:
    async def main() -> None:
        writer = Writer(opener(tmp_path, master_key))
        await writer.start()
        pending = [asyncio.ensure_future(writer.append(event())) for _ in range(50)]
        await asyncio.sleep(0)  # every append is queued, none awaited yet
        await writer.close()
        assert all(f.done() and f.exception() is None for f in pending)
        assert not writer.is_alive
        with pytest.raises(WriterClosed):
            await writer.append(event())

    asyncio.run(main())
    log = opener(tmp_path, master_key)()
    try:
        assert log.head() == 50
    finally:
        log.close()


def test_run_is_ordered_with_appends_and_runs_in_the_writer_thread(
    tmp_path: Path, master_key: MasterKey
) -> None:
    async def main() -> None:
        writer = Writer(opener(tmp_path, master_key))
        await writer.start()
        appended = asyncio.ensure_future(writer.append(event()))
        await asyncio.sleep(0)  # let the append queue itself
        head, thread = await writer.run(lambda log: (log.head(), threading.get_ident()))
        assert head == 1 and thread != threading.get_ident()
        assert await appended == range(1, 2)
        assert await writer.run(lambda log: log.save_snapshot("acme", 1, b"s")) is True
        with pytest.raises(ZeroDivisionError):
            await writer.run(lambda log: 1 / 0)
        assert writer.is_alive  # a failing run() does not stop the writer
        await writer.close()

    asyncio.run(main())


def test_a_conflict_fails_only_its_own_append(tmp_path: Path, master_key: MasterKey) -> None:
    async def main() -> None:
        writer = Writer(opener(tmp_path, master_key))
        await writer.start()
        await writer.append(event("t"))
        results = await asyncio.gather(
            writer.append(event("t", 1)),
            writer.append(event("t", 1)),  # decided on the same state: refused alone
            writer.append(event("u", 0)),
            return_exceptions=True,
        )
        assert results[0] == range(2, 3) and results[2] == range(3, 4)
        assert isinstance(results[1], AppendConflict) and results[1].actual == 2
        assert await writer.run(lambda log: log.head()) == 3
        await writer.close()

    asyncio.run(main())


class FailingSealer(Sealer):
    fail_next = False

    def append(self, appends: Sequence[Append]) -> None:
        if FailingSealer.fail_next:
            FailingSealer.fail_next = False
            raise StorageError("disk on fire")
        super().append(appends)


def test_a_failed_commit_reaches_every_waiter_of_the_batch(
    tmp_path: Path, master_key: MasterKey
) -> None:
    async def main() -> None:
        writer = Writer(opener(tmp_path, master_key, FailingSealer))
        await writer.start()
        gate = asyncio.Event()
        started = asyncio.Event()
        loop = asyncio.get_running_loop()

        def block(log: Sealer) -> None:
            # Hold the writer thread so the next appends pile up into one batch.
            asyncio.run_coroutine_threadsafe(_set(started), loop).result()
            asyncio.run_coroutine_threadsafe(gate.wait(), loop).result()
            FailingSealer.fail_next = True

        blocker = asyncio.ensure_future(writer.run(block))
        await started.wait()
        first = event("t", 0)
        batch = [
            asyncio.ensure_future(writer.append(a))
            for a in (first, event("t", first), event("u"))
        ]
        await asyncio.sleep(0)
        gate.set()
        await blocker
        results = await asyncio.gather(*batch, return_exceptions=True)
        assert all(
            isinstance(r, StorageError) and "disk on fire" in str(r) for r in results
        )
        assert writer.stats.failed_commits == 1
        # The writer keeps going: a follower of a failed append is refused.
        with pytest.raises(AppendConflict):
            await writer.append(event("t", first))
        assert await writer.append(event("t", 0)) == range(1, 2)
        await writer.close()

    asyncio.run(main())


async def _set(flag: asyncio.Event) -> None:
    flag.set()


def test_start_reports_open_errors(tmp_path: Path, master_key: MasterKey) -> None:
    from nocturnus.store.errors import WrongMasterKey

    async def main() -> None:
        writer = Writer(opener(tmp_path, master_key))
        await writer.start()
        await writer.append(event())
        await writer.close()
        wrong = Writer(opener(tmp_path, MasterKey.generate()))
        with pytest.raises(WrongMasterKey):
            await wrong.start()
        assert not wrong.is_alive
        with pytest.raises(WriterClosed):
            await wrong.append(event())

    asyncio.run(main())


def test_a_crashed_writer_answers_everyone_and_refuses_more(
    tmp_path: Path, master_key: MasterKey
) -> None:
    async def main() -> None:
        writer = Writer(opener(tmp_path, master_key))
        await writer.start()
        with pytest.raises(StorageError, match="crashed"):
            await writer.append(None)  # type: ignore[arg-type]  # a caller bug
        await asyncio.to_thread(writer._thread.join, 5)  # type: ignore[union-attr]
        assert not writer.is_alive
        with pytest.raises(WriterClosed):
            await writer.append(event())
        await asyncio.wait_for(writer.close(), 5)

    asyncio.run(main())
