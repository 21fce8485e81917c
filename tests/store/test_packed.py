"""The packed fast paths of the hot loops encode exactly what ``frame`` encodes.

The event log builds every record's AAD and chain hash with cached ``struct`` packers
(issue 3's throughput and replay targets); ``frame`` stays the definition, so any
difference would break decryption or the chain of logs written before.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nocturnus.store.chain import event_hash
from nocturnus.store.record import frame, record_aad
from nocturnus.store.sealer import _aad_packer

NAMES = st.text(max_size=20)
INT64 = st.integers(-(2**63), 2**63 - 1)


@given(database=NAMES.filter(bool), tenant=NAMES, kind=NAMES, seq=INT64)
def test_packed_aad_is_record_aad(database: str, tenant: str, kind: str, seq: int) -> None:
    head = frame("event", database) + b"i"
    pack, tail = _aad_packer(head, tenant, kind)
    assert pack(head, seq, tail) == record_aad(database, seq, tenant, kind)


@given(
    prev=st.binary(max_size=40),
    seq=INT64,
    ts_ms=INT64,
    tenant=NAMES,
    kind=NAMES,
    key_id=INT64,
    nonce=st.binary(max_size=16),
    payload=st.binary(max_size=300),
)
def test_packed_event_hash_is_the_framed_hash(
    prev: bytes,
    seq: int,
    ts_ms: int,
    tenant: str,
    kind: str,
    key_id: int,
    nonce: bytes,
    payload: bytes,
) -> None:
    parts = (prev, seq, ts_ms, tenant, kind, key_id, nonce, payload)
    assert event_hash(*parts) == hashlib.sha256(frame(*parts)).digest()


def test_event_hash_refuses_what_frame_refuses() -> None:
    with pytest.raises(TypeError):
        event_hash(bytes(32), True, 1, "t", "k", 1, bytes(12), b"x")  # type: ignore[arg-type]
