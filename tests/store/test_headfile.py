"""The head file (issue 16): what every read probes before it answers."""

from __future__ import annotations

import asyncio
from pathlib import Path

from nocturnus.service import tenants
from nocturnus.service.commands import TellFact
from nocturnus.service.databases import Databases
from nocturnus.store.crypto import MasterKey
from nocturnus.store.headfile import HeadProbe, HeadWriter, head_path
from nocturnus.store.sqlite import SqliteStore

MASTER = MasterKey(bytes(range(32)))


def test_a_record_reads_back_and_a_torn_or_missing_one_reads_as_unknown(
    tmp_path: Path,
) -> None:
    log = tmp_path / "x.db"
    probe = HeadProbe(log)
    assert probe.read() is None  # no file yet
    writer = HeadWriter(log)
    writer.write(42, 40)
    assert probe.read() == (42, 40, writer.writer)
    data = bytearray(head_path(log).read_bytes())
    data[0] ^= 1  # a seq that does not match its check word
    head_path(log).write_bytes(bytes(data))
    assert probe.read() is None
    writer.close()
    probe.close()


def test_the_probe_tells_another_process_s_appends_from_this_one_s(tmp_path: Path) -> None:
    async def scenario() -> None:
        first = Databases(tmp_path, MASTER, store=SqliteStore(tmp_path))
        second = Databases(tmp_path, MASTER, store=SqliteStore(tmp_path))
        await first.open()
        await second.open()
        a, b = first.get("default"), second.get("default")
        opened_at = a.store.probe("default")
        assert opened_at is not None and a.seems_fresh() and b.seems_fresh()
        for n in range(3):
            await tenants.tell(a, "acme", TellFact("p", (n,)))
        # a wrote last: every row after the foreign mark is its own, nothing to catch up
        assert a.store.probe("default") == opened_at
        assert a.seems_fresh()
        # b sees a's appends as another writer's: it is behind until it catches up
        assert b.store.probe("default") == a.head
        assert not b.seems_fresh()
        await b.fresh()
        assert b.seems_fresh()
        await tenants.tell(b, "acme", TellFact("p", ("b",)))
        assert not a.seems_fresh()
        await a.fresh()
        assert a.seems_fresh()
        for each in (second, first):
            await each.close()
            each.store.close()

    asyncio.run(scenario())
