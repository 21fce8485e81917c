"""The recorder contract (STYLE rule 9), through the sealer, on every backend.

Every test here runs once per recorder (``backend`` fixture): appends and their seqs,
the optimistic check, reads and ranges, tailing another writer, snapshots, keys and
shredding, a crash in the middle of a batch, and verify finding tampering.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from nocturnus.errors import StartupError
from nocturnus.store.compact import compact_log
from nocturnus.store.crypto import MasterKey
from nocturnus.store.errors import (
    AppendConflict,
    ChainBroken,
    CorruptRecord,
    InvalidRecord,
    StorageError,
    WrongMasterKey,
)
from nocturnus.store.record import LogRecord
from nocturnus.store.rotate import rotate_master_key
from nocturnus.store.sealer import Append, Sealer
from nocturnus.store.verify import verify_log
from tests.store.conftest import (
    DATABASE,
    TS0,
    Backend,
    body,
    delete,
    flip_payload,
    open_log,
    put,
)

ROOT = Path(__file__).resolve().parents[2]


def test_an_empty_log(log: Sealer) -> None:
    assert log.head() == 0
    assert list(log.read()) == []
    assert log.tenants() == {}
    assert verify_log(log).ok


def test_append_read_head_and_ranges(log: Sealer) -> None:
    batch = put(log, "a", 3) + put(log, "b", 2)
    assert [r.seq for r in batch] == [1, 2, 3, 4, 5]
    assert log.head() == 5
    assert list(log.read()) == batch
    assert list(log.read(after_seq=3)) == batch[3:]
    assert list(log.read(after_seq=1, until_seq=3)) == batch[1:3]
    assert list(log.read(limit=2)) == batch[:2]
    assert list(log.read(tenant="b")) == batch[3:]
    assert list(log.read(after_seq=4, tenant="b")) == batch[4:]
    assert list(log.read(tenant="nobody")) == []
    assert list(log.entries(tenants=["b"])) == [tuple(r) for r in batch[3:]]
    assert log.tenants() == {"a": TS0, "b": TS0}
    assert log.tenant_events() == {"a": 3, "b": 2}


def test_seqs_are_given_out_in_order_in_one_batch(log: Sealer) -> None:
    appends = [Append(t, None, TS0, [("k", body(t))] * n) for t, n in [("a", 2), ("b", 1), ("", 3)]]
    log.append(appends)
    assert [a.seqs for a in appends] == [range(1, 3), range(3, 4), range(4, 7)]
    assert [r.tenant for r in log.read()] == ["a", "a", "b", "", "", ""]


def test_an_append_decided_on_an_old_position_is_refused(log: Sealer) -> None:
    first = put(log, "t", 2)
    put(log, "other", 1)  # another stream moving does not matter
    third = put(log, "t", 1, expected=first[-1].seq)
    with pytest.raises(AppendConflict) as info:
        put(log, "t", 1, expected=first[-1].seq)  # decided before `third`
    conflict = info.value
    assert (conflict.stream, conflict.expected, conflict.actual) == ("t", 2, third[0].seq)
    assert conflict.code == "WRITE_CONFLICT" and "retry" in conflict.message
    assert log.head() == 4  # nothing of it was written
    put(log, "t", 1, expected=third[0].seq)  # caught up: decided again, stored
    put(log, "new", 1, expected=0)
    with pytest.raises(AppendConflict):
        put(log, "new", 1, expected=0)


def test_a_refused_append_leaves_the_rest_of_its_batch(log: Sealer) -> None:
    put(log, "t", 1)
    stale = Append("t", 0, TS0, [("k", body())])
    good = Append("u", 0, TS0, [("k", body())])
    follower = Append("t", stale, TS0, [("k", body())])  # decided on `stale`'s events
    bad = Append("u", None, TS0, [("k", "not bytes")])  # type: ignore[list-item]
    after = Append("u", good, TS0, [("k", body())])
    log.append([stale, good, follower, bad, after])
    assert isinstance(stale.error, AppendConflict) and stale.seqs is None
    assert isinstance(follower.error, AppendConflict) and follower.error.actual is None
    assert isinstance(bad.error, InvalidRecord)
    assert (good.seqs, after.seqs) == (range(2, 3), range(3, 4))
    assert [r.tenant for r in log.read()] == ["t", "u", "u"]


def test_a_chained_append_follows_its_predecessor_across_batches(log: Sealer) -> None:
    first = Append("t", 0, TS0, [("k", body())])
    log.append([first])
    second = Append("t", first, TS0, [("k", body())])
    log.append([second])
    assert second.seqs == range(2, 3)


def test_two_writers_never_share_a_seq_and_see_each_others_positions(
    backend: Backend, master_key: MasterKey, log: Sealer
) -> None:
    other = open_log(backend, master_key)  # another process's writer
    try:
        a = put(log, "t", 1)
        b = put(other, "u", 2)  # continues after the first writer's seq
        assert [r.seq for r in a + b] == [1, 2, 3]
        c = put(log, "u", 1, expected=b[-1].seq)  # a position it never wrote itself
        with pytest.raises(AppendConflict):
            put(other, "u", 1, expected=b[-1].seq)  # stale now
        assert c[0].seq == 4
        assert [r.seq for r in other.read()] == [1, 2, 3, 4]
        assert verify_log(log).ok
    finally:
        other.close()


def test_concurrent_writers_in_threads_interleave_into_one_chain(
    backend: Backend, master_key: MasterKey
) -> None:
    def write(tenant: str) -> None:
        own = open_log(backend, master_key)
        try:
            position = 0
            for _ in range(15):
                position = put(own, tenant, 2, expected=position)[-1].seq
        finally:
            own.close()

    open_log(backend, master_key).close()  # create it once, then race
    threads = [threading.Thread(target=write, args=(f"t{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log = open_log(backend, master_key)
    try:
        assert [r.seq for r in log.read()] == list(range(1, 91))
        assert log.tenant_events() == {"t0": 30, "t1": 30, "t2": 30}
        assert verify_log(log).ok
    finally:
        log.close()


def test_tail_wakes_on_another_writers_append(
    backend: Backend, master_key: MasterKey, log: Sealer
) -> None:
    reader = open_log(backend, master_key, readonly=True, check_tail=None)
    try:
        put(log, "t", 1)
        assert [e[0] for e in reader.tail(0, 0.0)] == [1]
        started = time.monotonic()
        assert list(reader.tail(1, 0.2)) == []  # nothing new: the timeout ends it
        assert time.monotonic() - started >= 0.15
        def later() -> None:
            time.sleep(0.1)
            writer = open_log(backend, master_key)  # its own connection, its thread
            try:
                put(writer, "t", 2)
            finally:
                writer.close()

        timer = threading.Thread(target=later)
        timer.start()
        try:
            got = list(reader.tail(1, 10.0))
        finally:
            timer.join()
        assert [e[0] for e in got] in ([2, 3], [2])  # woken by the commit, not the timeout
        assert reader.head() == 3
        with pytest.raises(StorageError, match="read-only"):
            put(reader, "t", 1)
    finally:
        reader.close()


def test_malformed_appends_are_refused(log: Sealer) -> None:
    for append in (
        Append("t", None, TS0, []),
        Append("t", None, TS0, [("", b"x")]),
        Append("t", None, "now", [("k", b"x")]),  # type: ignore[arg-type]
        Append("", None, TS0, [("tenant_deleted", b"x")], ends_stream=True),
    ):
        log.append([append])
        assert isinstance(append.error, InvalidRecord), append
    assert log.head() == 0


def test_reopen_keeps_everything(
    backend: Backend, master_key: MasterKey, log: Sealer
) -> None:
    batch = put(log, "a", 3) + put(log, "b", 2)
    assert log.save_snapshot("a", 5, b"state-a")
    log.close()
    log = open_log(backend, master_key)
    try:
        assert log.head() == 5
        assert list(log.read()) == batch
        assert set(log.tenants()) == {"a", "b"}
        assert log.latest_snapshot("a") == (5, b"state-a")
        assert put(log, "a", 1, expected=3)[0].seq == 6
    finally:
        log.close()


def test_the_wrong_master_key_is_refused(
    backend: Backend, master_key: MasterKey, log: Sealer
) -> None:
    put(log, "a", 2)
    with pytest.raises(WrongMasterKey) as info:
        open_log(backend, MasterKey.generate())
    message = str(info.value)
    assert "\n" not in message and "master key" in message
    assert isinstance(info.value, StartupError)


def test_the_rows_of_another_database_are_refused(
    backend: Backend, master_key: MasterKey, log: Sealer
) -> None:
    put(log, "a", 1)
    recorder = backend.store.recorder(DATABASE)
    recorder.database = "globex"  # acme's rows, found where globex's were expected
    with pytest.raises(StartupError, match="belongs to database 'acme'"):
        Sealer.open(recorder, master_key)


def test_ending_a_stream_shreds_it(
    backend: Backend, master_key: MasterKey, log: Sealer
) -> None:
    gone = put(log, "gone", 3)
    kept = put(log, "kept", 1)
    assert log.save_snapshot("gone", 4, b"state of gone")
    reader = open_log(backend, master_key, readonly=True)
    try:
        assert reader.read(tenant="gone").__next__().body is not None
        marker = delete(log, "gone", expected=gone[-1].seq)
        assert "gone" not in log.tenants()
        assert log.latest_snapshot("gone") is None
        got = {r.seq: r for r in log.read()}
        assert [got[s].body for s in (1, 2, 3)] == [None, None, None]
        assert got[4].body == kept[0].body
        # The deletion itself stays readable (it is under the database-level key).
        assert got[5] == marker
        # Shredding is immediate for another process's reader too.
        assert [r.body for r in reader.read(tenant="gone")] == [None, None, None, marker.body]
        # A new tenant of the same name gets a new key and reads fine.
        fresh = put(log, "gone", 2, expected=marker.seq)
        assert "gone" in log.tenants()
        assert list(log.read(after_seq=5, tenant="gone")) == fresh
        # The old incarnation's snapshot cannot come back under the new key.
        assert log.save_snapshot("gone", 4, b"old state") is False
    finally:
        reader.close()
    log.close()
    log = open_log(backend, master_key)
    try:
        assert [r.body for r in log.read(tenant="gone")] == [
            None, None, None, marker.body, fresh[0].body, fresh[1].body
        ]
        assert verify_log(log).events_shredded == 3
    finally:
        log.close()


def test_delete_and_recreate_in_one_batch(log: Sealer) -> None:
    appends = [
        Append("t", None, TS0, [("fact_told", b"1")]),
        Append("t", None, TS0, [("tenant_deleted", b"2")], ends_stream=True),
        Append("t", None, TS0, [("fact_told", b"3")]),
    ]
    log.append(appends)
    assert [r.body for r in log.read()] == [None, b"2", b"3"]


def test_deleting_a_tenant_without_events(log: Sealer) -> None:
    marker = delete(log, "never")
    assert log.tenants() == {}
    assert list(log.read()) == [marker]


def test_snapshots_round_trip(log: Sealer) -> None:
    put(log, "a", 10)
    put(log, "", 1)
    assert log.latest_snapshot("a") is None
    for seq in (2, 4, 6, 8, 10):
        assert log.save_snapshot("a", seq, f"state@{seq}".encode()) is True
    assert log.latest_snapshot("a") == (10, b"state@10")
    assert log.save_snapshot("", 11, b"db state")
    assert log.latest_snapshot("") == (11, b"db state")
    assert log.latest_snapshot("b") is None
    assert log.save_snapshot("b", 11, b"no key yet") is False
    with pytest.raises(InvalidRecord):
        log.save_snapshot("a", 99, b"from the future")
    report = verify_log(log)
    assert report.ok, report.summary()
    assert report.snapshots_checked == 4  # only the newest few are kept


def test_a_snapshot_from_another_writer_respects_shredding(
    backend: Backend, master_key: MasterKey, log: Sealer
) -> None:
    snapper = open_log(backend, master_key)
    try:
        put(log, "t", 4)
        assert snapper.save_snapshot("t", 4, b"state@4") is True
        assert log.latest_snapshot("t") == (4, b"state@4")
        delete(log, "t")
        assert snapper.save_snapshot("t", 4, b"late state@4") is False
        put(log, "t", 1)
        assert snapper.save_snapshot("t", 5, b"pre-incarnation") is False
        assert log.latest_snapshot("t") is None
        assert snapper.save_snapshot("t", 6, b"state@6") is True
        assert log.latest_snapshot("t") == (6, b"state@6")
        assert verify_log(log).ok
    finally:
        snapper.close()


CRASH = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from nocturnus.store.backends import open_store
    from nocturnus.store.crypto import MasterKey
    from nocturnus.store.sealer import Append, Sealer

    location, data_dir, key = sys.argv[1], Path(sys.argv[2]), bytes.fromhex(sys.argv[3])
    log = Sealer.open(open_store(location, data_dir).recorder("acme"), MasterKey(key))
    real = log.recorder.transaction

    def transaction():
        manager = real()
        tx = manager.__enter__()
        insert = tx.insert

        def insert_then_die(rows):
            insert(rows)
            print("INSERTED", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

        tx.insert = insert_then_die
        return _Held(manager, tx)

    class _Held:
        def __init__(self, manager, tx):
            self.manager, self.tx = manager, tx
        def __enter__(self):
            return self.tx
        def __exit__(self, *exc):
            return self.manager.__exit__(*exc)

    log.recorder.transaction = transaction
    log.append([Append("t", None, 1, [("k", b"lost")] * 500), Append("new", None, 1, [("k", b"x")])])
    """
)


def test_a_crash_in_the_middle_of_a_batch_leaves_nothing_of_it(
    backend: Backend, master_key_bytes: bytes, log: Sealer
) -> None:
    before = put(log, "t", 3)
    location = getattr(backend, "location", "")
    data_dir = getattr(backend.store, "data_dir", Path("."))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.run(
        [sys.executable, "-c", CRASH, location, str(data_dir), master_key_bytes.hex()],
        capture_output=True,
        check=False,
        env=env,
        timeout=60,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    assert child.stdout == b"INSERTED\n"
    assert log.head() == 3
    assert list(log.read()) == before
    assert "new" not in log.tenants()  # its key, created in that transaction, is gone
    after = put(log, "new", 1)
    assert after[0].seq == 4
    assert verify_log(log).ok


def test_verify_reports_a_clean_log_with_progress(log: Sealer) -> None:
    put(log, "acme", 7)
    calls: list[tuple[int, int]] = []
    report = verify_log(log, progress=lambda done, total: calls.append((done, total)))
    assert report.ok and report.first_bad_seq is None
    assert (report.head, report.events_checked) == (7, 7)
    assert calls[-1] == (7, 7)
    assert "OK" in report.summary()


def test_verify_finds_a_flipped_ciphertext_bit_and_the_read_names_it(
    backend: Backend, master_key: MasterKey, log: Sealer
) -> None:
    put(log, "acme", 5)
    flip_payload(backend, 3)
    it = log.read()
    assert [next(it).seq for _ in range(2)] == [1, 2]
    with pytest.raises(CorruptRecord) as info:
        next(it)
    assert info.value.seq == 3 and "seq 3" in str(info.value)
    report = verify_log(log)
    assert not report.ok and report.first_bad_seq == 3
    assert "seq 3" in report.summary()
    with pytest.raises(ChainBroken) as broken:  # reopening: the tail check sees it
        open_log(backend, master_key)
    assert broken.value.seq == 3


@pytest.mark.parametrize(
    ("damage", "bad_seq"),
    [
        ("UPDATE events SET ts_ms = ts_ms + 1 WHERE seq = 4", 4),
        ("UPDATE events SET kind = 'rule_taught' WHERE seq = 2", 2),
        ("DELETE FROM events WHERE seq = 5", 5),
        ("DELETE FROM events WHERE seq = 1", 1),
        ("DELETE FROM events WHERE seq = 8", 8),  # the newest row
        ("DELETE FROM events WHERE seq >= 7", 7),  # a truncated tail
    ],
)
def test_changed_or_removed_rows_stop_the_open_and_verify_names_them(
    backend: Backend, master_key: MasterKey, log: Sealer, damage: str, bad_seq: int
) -> None:
    put(log, "acme", 4)
    put(log, "other", 4)
    log.close()
    backend.sql(DATABASE, damage)
    with pytest.raises(ChainBroken) as info:
        open_log(backend, master_key)
    assert info.value.seq == bad_seq
    assert f"seq {bad_seq}" in str(info.value) and "\n" not in str(info.value)
    unchecked = open_log(backend, master_key, readonly=True, check_tail=None)
    try:
        assert verify_log(unchecked).first_bad_seq == bad_seq
    finally:
        unchecked.close()


def test_compaction_drops_shredded_rows_and_still_verifies(
    backend: Backend, master_key: MasterKey, log: Sealer
) -> None:
    put(log, "gone", 3)
    kept = put(log, "kept", 2)
    marker = delete(log, "gone")
    later = put(log, "kept", 1)
    done = compact_log(log, "log_compacted", lambda c: b'{"compacted":true}', TS0)
    assert done is not None
    assert (done.dropped_events, done.dropped_keys, done.tenants) == (4, 1, ("gone",))
    assert done.ranges == ((1, 3), (marker.seq, marker.seq))
    records = list(log.read())
    assert records == [*kept, *later, LogRecord(8, TS0, "", "log_compacted", b'{"compacted":true}')]
    assert verify_log(log).ok
    assert compact_log(log, "log_compacted", lambda c: b"{}", TS0) is None
    log.close()
    log = open_log(backend, master_key)
    try:
        assert verify_log(log).ok and log.head() == 8
        assert put(log, "kept", 1, expected=later[0].seq)[0].seq == 9
    finally:
        log.close()


def test_reads_in_many_pages_across_gaps(
    monkeypatch: pytest.MonkeyPatch, log: Sealer
) -> None:
    # A backend that reads in pages (PostgreSQL: by rows, and for the whole log or a
    # replay share also by windows of seqs) gives the same rows as one read: tiny
    # pages here, and gaps of compacted seqs wider than a page.
    from nocturnus.store import postgresql

    monkeypatch.setattr(postgresql, "PAGE_ROWS", 3)
    put(log, "gone", 7)
    put(log, "a", 2)
    put(log, "b", 4)
    delete(log, "gone")
    put(log, "a", 5)
    put(log, "b", 1)
    assert compact_log(log, "log_compacted", lambda c: b"{}", TS0) is not None
    every = list(log.read())
    assert [r.seq for r in every] == [8, 9, 10, 11, 12, 13, 15, 16, 17, 18, 19, 20, 21]
    for after in (0, 3, 8, 14, 20, 21):
        for until in (None, 9, 15, 21):
            for limit in (None, 1, 3, 4, 100):
                want = [r for r in every if r.seq > after and (until is None or r.seq <= until)]
                got = list(log.read(after_seq=after, until_seq=until, limit=limit))
                assert got == want[:limit], (after, until, limit)
                for tenant in ("a", "b"):
                    mine = [r for r in want if r.tenant == tenant]
                    got = list(log.read(after_seq=after, until_seq=until, tenant=tenant))
                    assert got == mine, (after, until, tenant)
                    got_share = list(log.entries(after, tenants=[tenant], until_seq=until))
                    assert got_share == [tuple(r) for r in mine], (after, until, tenant)
    assert verify_log(log).ok


def test_compaction_refuses_a_log_that_does_not_verify(
    backend: Backend, master_key: MasterKey, log: Sealer
) -> None:
    put(log, "gone", 3)
    delete(log, "gone")
    flip_payload(backend, 2)  # under a destroyed key: only the chain can tell
    with pytest.raises(ChainBroken):
        compact_log(log, "log_compacted", lambda c: b"{}", TS0)
    assert log.head() == 4


def test_master_key_rotation(
    backend: Backend, master_key: MasterKey, log: Sealer
) -> None:
    batch = put(log, "a", 3) + put(log, "b", 1)
    new_key = MasterKey.generate()
    assert rotate_master_key(log, new_key) == 2
    put(log, "c", 1)
    log.close()
    with pytest.raises(WrongMasterKey):
        open_log(backend, master_key)
    log = open_log(backend, new_key)
    try:
        assert list(log.read())[:4] == batch
        assert verify_log(log).ok
    finally:
        log.close()


def test_a_backup_file_restores_into_the_store(
    backend: Backend, master_key: MasterKey, log: Sealer, tmp_path: Path
) -> None:
    batch = put(log, "a", 3)
    assert log.save_snapshot("a", 3, b"snap")
    log.recorder.backup_to(tmp_path / "copy.db", {"backup_info": b"{}"})
    put(log, "a", 1)
    log.close()
    backend.store.restore(DATABASE, tmp_path / "copy.db")
    log = open_log(backend, master_key)
    try:
        assert list(log.read()) == batch
        assert log.latest_snapshot("a") == (3, b"snap")
        assert log.meta_value("backup_info") == b"{}"
        assert verify_log(log).ok
    finally:
        log.close()


def test_a_closed_log_refuses(log: Sealer) -> None:
    log.close()
    with pytest.raises(StorageError):
        put(log, "t", 1)
    with pytest.raises(StorageError):
        log.head()


def test_opening_and_verifying_beside_a_busy_writer_sees_one_commit(
    backend: Backend, master_key: MasterKey
) -> None:
    """The head and the rows a check compares come from one commit: a reader opening
    or verifying while another process appends never reports a broken chain."""
    open_log(backend, master_key).close()
    stop = threading.Event()
    failures: list[BaseException] = []

    def write() -> None:
        own = open_log(backend, master_key)
        try:
            while not stop.is_set():
                put(own, "busy", 3)
        except BaseException as e:  # noqa: BLE001 - the test thread reports it
            failures.append(e)
        finally:
            own.close()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        for _ in range(15):
            reader = open_log(backend, master_key, readonly=True)
            try:
                report = verify_log(reader)
                assert report.ok, report.summary()
            finally:
                reader.close()
    finally:
        stop.set()
        writer.join()
    assert failures == []
