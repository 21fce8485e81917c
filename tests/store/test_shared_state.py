"""The shared state contract (``store/shared``), on both backends, and across processes.

Every test runs once per backend (``backend`` fixture of tests/store/conftest.py): the
SQLite file beside the logs and the PostgreSQL table of the store's database.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nocturnus.store.shared import SharedState, counter_value, shared_key
from tests.store.conftest import Backend

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def shared(backend: Backend) -> Iterator[SharedState]:
    state = backend.store.shared()
    yield state
    state.close()


def test_put_get_and_versions(shared: SharedState) -> None:
    assert shared.get("s", "k") is None
    assert shared.put("s", "k", b"one", ttl_s=60) == 1
    entry = shared.get("s", "k")
    assert entry is not None and (entry.value, entry.version) == (b"one", 1)
    assert shared.put("s", "k", b"two", ttl_s=60) == 2
    assert shared.get("s", "k").value == b"two"  # type: ignore[union-attr]
    assert shared.get("other", "k") is None  # spaces do not mix


def test_compare_and_set(shared: SharedState) -> None:
    assert shared.put("s", "k", b"a", ttl_s=60, expect=0) == 1
    assert shared.put("s", "k", b"b", ttl_s=60, expect=0) is None  # exists
    assert shared.put("s", "k", b"b", ttl_s=60, expect=2) is None  # stale version
    assert shared.put("s", "k", b"b", ttl_s=60, expect=1) == 2
    assert shared.get("s", "k").value == b"b"  # type: ignore[union-attr]
    assert shared.put("s", "absent", b"x", ttl_s=60, expect=1) is None
    assert shared.get("s", "absent") is None


def test_expiry_reads_as_absent_and_frees_the_key(shared: SharedState) -> None:
    shared.put("s", "k", b"short", ttl_s=0.05)
    time.sleep(0.1)
    assert shared.get("s", "k") is None
    assert shared.scan("s") == []
    # an expired entry is as good as absent for expect=0, and a stale version of it
    # never matches the entry made after it
    version = shared.put("s", "k", b"new", ttl_s=60, expect=0)
    assert version is not None and version > 1
    assert shared.put("s", "k", b"x", ttl_s=60, expect=1) is None
    shared.put("s", "gone", b"short", ttl_s=0.05)
    time.sleep(0.1)
    assert not shared.delete("s", "gone")  # nothing live was removed


def test_delete_scan_and_prefixes(shared: SharedState) -> None:
    for key in ["a\x1f1", "a\x1f2", "a\x1f2\x1fz", "ab", "b\x1f1"]:
        shared.put("s", key, key.encode(), ttl_s=60)
    shared.put("t", "a\x1f9", b"elsewhere", ttl_s=60)
    prefix = shared_key("a", "")
    assert [k for k, _ in shared.scan("s", prefix)] == [
        "a\x1f1",
        "a\x1f2",
        "a\x1f2\x1fz",
    ]
    assert [k for k, _ in shared.scan("s")] == [
        "a\x1f1",
        "a\x1f2",
        "a\x1f2\x1fz",
        "ab",
        "b\x1f1",
    ]
    assert shared.delete("s", "ab")
    assert not shared.delete("s", "ab")
    assert shared.delete_prefix("s", prefix) == 3
    assert [k for k, _ in shared.scan("s")] == ["b\x1f1"]
    assert [k for k, _ in shared.scan("t")] == ["a\x1f9"]


def test_counters_are_fixed_windows(shared: SharedState) -> None:
    assert shared.add("rate", "k", 1, ttl_s=60) == 1
    assert shared.add("rate", "k", 4, ttl_s=60) == 5
    assert shared.add("rate", "k", -2, ttl_s=60) == 3
    entry = shared.get("rate", "k")
    assert entry is not None and counter_value(entry.value) == 3
    shared.add("rate", "short", 7, ttl_s=0.05)
    time.sleep(0.1)
    assert shared.add("rate", "short", 1, ttl_s=60) == 1  # a new window starts at 0
    # later adds keep the window's expiry
    first = shared.get("rate", "k").expires_ms  # type: ignore[union-attr]
    shared.add("rate", "k", 1, ttl_s=3600)
    assert shared.get("rate", "k").expires_ms == first  # type: ignore[union-attr]


def test_key_parts_cannot_smuggle_the_separator() -> None:
    assert shared_key("db", "tenant", "id") == "db\x1ftenant\x1fid"
    with pytest.raises(ValueError):
        shared_key("db", "ten\x1fant")


def test_processes_see_each_other_and_counters_stay_exact(
    backend: Backend, tmp_path: Path
) -> None:
    """Three processes add 300 each to one counter and compare-and-set one entry:
    no add is lost and exactly one creator wins."""
    location = getattr(backend, "location", "")
    data_dir = tmp_path / "data"  # the SQLite backend's data dir
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from nocturnus.store.backends import open_store
        shared = open_store({location!r}, Path({str(data_dir)!r})).shared()
        won = shared.put("s", "owner", sys.argv[1].encode(), ttl_s=60, expect=0)
        for _ in range(300):
            shared.add("rate", "k", 1, ttl_s=60)
        print("won" if won else "lost")
        """
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(n)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(3)
    ]
    outcomes = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(outcomes) == ["lost", "lost", "won"]
    shared = backend.store.shared()
    try:
        assert counter_value(shared.get("rate", "k").value) == 900  # type: ignore[union-attr]
    finally:
        shared.close()
