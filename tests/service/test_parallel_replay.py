"""``nocturnus replay`` in several processes summarises exactly what one does (issue 3).

Tenants never read each other's events, so replaying them in shares (one forked
process each, one table scan per share) must give the same counts, facts, rules and
last seqs as one process folding the whole log, with shredded tenants and
database-level events in whichever share holds them.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from nocturnus.service import tenants
from nocturnus.service.commands import TeachRule, TellFact
from nocturnus.service.databases import Databases
from nocturnus.service.maintenance import _shares, replay_database
from nocturnus.store.crypto import MasterKey
from nocturnus.store.sealer import Sealer
from nocturnus.store.sqlite import SqliteStore
from tests.logs import sqlite_log

MASTER = MasterKey(bytes(range(32)))


def lit(predicate: str, *args: object) -> dict[str, object]:
    return {"predicate": predicate, "args": list(args), "negated": False, "naf": False}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("parallel") / "data"

    async def write() -> None:
        databases = Databases(path, MASTER)
        await databases.open()
        db = databases.get("default")
        await tenants.teach_database_rule(db, TeachRule(lit("p", "?x"), (lit("q", "?x"),)))
        for i in range(40):
            name = ("acme", "globex", "initech", "umbrella")[i % 4]
            await tenants.tell(db, name, TellFact("edge", (f"n{i}", i, i / 2)))
        await tenants.teach(db, "acme", TeachRule(lit("r", "?x"), (lit("edge", "?x", "?_", "?_"),)))
        await tenants.delete_tenant(db, "globex")  # its events read back shredded
        await tenants.tell(db, "globex", TellFact("edge", ("again", 1, 0.5)))
        await databases.close()

    asyncio.run(write())
    return path


def comparable(summary: object) -> object:
    return dataclasses.replace(summary, seconds=0.0, processes=1)  # type: ignore[type-var]


@pytest.mark.parametrize("workers", [2, 3, 8])
@pytest.mark.parametrize("to_seq", [None, 1, 20, 44])
def test_shares_in_processes_summarise_like_one_process(
    data_dir: Path, workers: int, to_seq: int | None
) -> None:
    one = replay_database(SqliteStore(data_dir), MASTER, "default", to_seq=to_seq)
    many = replay_database(
        SqliteStore(data_dir), MASTER, "default", to_seq=to_seq, workers=workers, parallel_min_events=0
    )
    assert one.processes == 1
    assert comparable(many) == comparable(one)
    if to_seq is None:
        assert many.processes > 1 and many.shredded > 0 and many.database_rules == 1
        assert f"; {many.processes} processes)" in many.lines()[0]


def test_small_logs_stay_in_one_process(data_dir: Path) -> None:
    assert replay_database(SqliteStore(data_dir), MASTER, "default", workers=4).processes == 1


def test_shares_balance_event_counts_and_keep_every_tenant() -> None:
    counts = {"a": 50, "b": 30, "c": 20, "d": 10, "": 1}
    shares = _shares(counts, 2)
    assert sorted(t for share in shares for t in share) == sorted(counts)
    assert sorted(sum(counts[t] for t in share) for share in shares) == [51, 60]
    assert _shares({"a": 5}, 4) == [["a"]]


def test_entries_of_a_tenant_set_are_the_rows_of_those_tenants(data_dir: Path) -> None:
    log = sqlite_log(data_dir / "default.db", "default", MASTER, readonly=True)
    try:
        every = list(log.entries())
        for chosen in ({"acme"}, {"", "globex"}, {"initech", "umbrella", "nobody"}, set()):
            assert list(log.entries(3, tenants=chosen, until_seq=40)) == [
                e for e in every if e[2] in chosen and 3 < e[0] <= 40
            ]
        counts = log.tenant_events(30)
        assert sum(counts.values()) == 30 and set(counts) <= {e[2] for e in every}
    finally:
        log.close()


def test_a_share_that_fails_fails_the_replay_with_its_message(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nocturnus.errors import NocturnusError
    from nocturnus.service import maintenance
    from nocturnus.store.errors import CorruptRecord

    real = maintenance.replay_log

    def failing(event_log: Sealer, **kwargs: object) -> object:
        if "umbrella" in (kwargs.get("tenants") or ()):  # type: ignore[operator]
            raise CorruptRecord(7, "a test's corrupt record")
        return real(event_log, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(maintenance, "replay_log", failing)  # forked children too
    log = sqlite_log(data_dir / "default.db", "default", MASTER, readonly=True)
    counts = log.tenant_events()
    log.close()
    placed = {w: _shares(counts, w) for w in (2, 3, 4)}
    assert any("umbrella" not in shares[0] for shares in placed.values())  # a child's
    for workers in placed:
        with pytest.raises(NocturnusError, match="seq 7"):
            replay_database(SqliteStore(data_dir), MASTER, "default", workers=workers, parallel_min_events=0)
