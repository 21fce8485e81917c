"""The keyed chain (issue 14, item 2): only a holder of the master key can produce a
log that verifies, on every backend.

Regression: with the plain SHA-256 chain, deleting a retraction, covering its seq with a
``compacted`` row and recomputing the chain and head gave a log that opened healthy and
verified OK, with the retracted fact back.
"""

from __future__ import annotations

import pytest

from nocturnus.store.chain import PLAIN
from nocturnus.store.compact import compact_log
from nocturnus.store.crypto import MasterKey
from nocturnus.store.errors import ChainBroken
from nocturnus.store.sealer import CHAIN_KEY, Sealer
from nocturnus.store.verify import verify_log
from tests.store.conftest import (
    DATABASE,
    TS0,
    Backend,
    anchor_path,
    delete,
    open_log,
    put,
    rechain,
)


def attack_retraction(backend: Backend) -> None:
    """Delete seq 3 (the retraction), record it as compacted, recompute the chain."""
    backend.sql(DATABASE, "DELETE FROM events WHERE seq = 3")
    backend.sql(
        DATABASE,
        "INSERT INTO compacted (first_seq, last_seq, compacted_seq, mac) VALUES (3, 3, 4, ?)",
        (b"\x00" * 32,),
    )
    rechain(backend)


def test_a_recomputed_chain_over_a_deleted_retraction_does_not_verify(
    backend: Backend, master_key: MasterKey, log: Sealer
) -> None:
    put(log, "acme", 2, kind="fact_told")
    put(log, "acme", 1, kind="fact_retracted")
    put(log, "acme", 1, kind="fact_told")
    log.close()
    attack_retraction(backend)
    with pytest.raises(ChainBroken):
        open_log(backend, master_key)
    unchecked = open_log(backend, master_key, readonly=True, check_tail=None)
    try:
        report = verify_log(unchecked)
        assert not report.ok
        reasons = " ".join(p.message for p in report.problems)
        assert "not recorded by a holder of the master key" in reasons
        assert report.first_bad_seq is not None and report.first_bad_seq <= 3
    finally:
        unchecked.close()


def test_removing_the_chain_key_is_a_downgrade_and_refused(
    backend: Backend, master_key: MasterKey, log: Sealer
) -> None:
    put(log, "acme", 3)
    log.close()
    backend.sql(DATABASE, "DELETE FROM meta WHERE name = ?", (CHAIN_KEY,))
    rechain(backend)  # a valid plain chain: still refused, the token says "keyed"
    with pytest.raises(ChainBroken, match="chain key is gone"):
        open_log(backend, master_key)


def make_legacy(backend: Backend, master_key: MasterKey) -> None:
    """Turn a log into one written before issue 14: plain chain, version-1 token."""
    backend.sql(DATABASE, "DELETE FROM meta WHERE name = ?", (CHAIN_KEY,))
    backend.sql(
        DATABASE,
        "UPDATE meta SET value = ? WHERE name = 'master_key_check'",
        (master_key.check_value(DATABASE, 1),),
    )
    backend.sql(DATABASE, "UPDATE compacted SET mac = NULL")
    rechain(backend, PLAIN)
    path = anchor_path(backend)
    if path is not None:  # nor a head anchor
        path.unlink(missing_ok=True)


def test_a_plain_chain_is_upgraded_by_its_first_read_write_open(
    backend: Backend, master_key: MasterKey, log: Sealer
) -> None:
    put(log, "gone", 2)
    kept = put(log, "kept", 3)
    delete(log, "gone")
    assert compact_log(log, "log_compacted", lambda c: b"{}", TS0) is not None
    before = list(log.read())
    log.close()
    make_legacy(backend, master_key)
    reader = open_log(backend, master_key, readonly=True)  # read-only: stays plain
    try:
        assert not reader.chain.keyed and verify_log(reader).ok
    finally:
        reader.close()
    upgraded = open_log(backend, master_key)
    try:
        assert upgraded.chain.keyed
        assert list(upgraded.read()) == before
        assert verify_log(upgraded).ok
        put(upgraded, "kept", 1, expected=kept[-1].seq)
    finally:
        upgraded.close()
    again = open_log(backend, master_key)
    try:
        assert again.chain.keyed and verify_log(again).ok
    finally:
        again.close()
    (token,) = backend.sql(DATABASE, "SELECT value FROM meta WHERE name = 'master_key_check'")
    assert master_key.check_version(bytes(token[0]), DATABASE) == 2


def test_a_damaged_plain_chain_is_not_upgraded(
    backend: Backend, master_key: MasterKey, log: Sealer
) -> None:
    put(log, "acme", 5)
    log.close()
    make_legacy(backend, master_key)
    backend.sql(DATABASE, "UPDATE events SET ts_ms = ts_ms + 1 WHERE seq = 2")
    with pytest.raises(ChainBroken) as info:
        open_log(backend, master_key, check_tail=None)
    assert info.value.seq == 2 and "upgrade" in str(info.value)
    assert backend.sql(DATABASE, "SELECT 1 FROM meta WHERE name = ?", (CHAIN_KEY,)) == []
