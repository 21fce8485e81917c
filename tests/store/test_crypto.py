"""Master key loading, key wrapping and the record cipher."""

from __future__ import annotations

import base64
import logging
import os
import stat
import warnings
from pathlib import Path

import pytest

from nocturnus.errors import StartupError
from nocturnus.store.crypto import AesGcmCipher, MasterKey, load_master_key
from nocturnus.store.errors import CryptoError, StorageError

RAW = bytes(range(32))


@pytest.mark.parametrize(
    "value",
    [
        RAW.hex(),
        RAW.hex().upper(),
        f"  {RAW.hex()}\n",
        base64.b64encode(RAW).decode(),
        base64.urlsafe_b64encode(bytes([250] * 32)).decode(),
    ],
)
def test_env_master_key_formats(tmp_path: Path, value: str) -> None:
    key = load_master_key(tmp_path, value)
    assert isinstance(key, MasterKey)
    assert not (tmp_path / "master.key").exists()


def test_env_key_is_the_key_it_encodes(tmp_path: Path) -> None:
    a = load_master_key(tmp_path, RAW.hex())
    b = load_master_key(tmp_path, base64.b64encode(RAW).decode())
    assert b.matches(a.check_value("db"), "db")


@pytest.mark.parametrize(
    "value",
    ["abc", "zz" * 32, RAW.hex()[:-2], base64.b64encode(bytes(31)).decode(), "é" * 64],
)
def test_bad_env_master_key_is_one_clear_line(tmp_path: Path, value: str) -> None:
    with pytest.raises(StartupError) as info:
        load_master_key(tmp_path, value)
    message = str(info.value)
    assert "NOCTURNUS_MASTER_KEY" in message and "\n" not in message
    assert value not in message  # never echo a secret


def test_key_file_is_created_once_with_mode_0600_and_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "data"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # logged once, not also through warnings (issue 3)
        with caplog.at_level(logging.WARNING, logger="nocturnus.store"):
            first = load_master_key(data_dir, None)
    assert [r.getMessage().count("master.key") for r in caplog.records] == [1]
    path = data_dir / "master.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_text().strip()) == 64
    second = load_master_key(data_dir, "")
    assert second.matches(first.check_value("db"), "db")
    assert [p.name for p in data_dir.iterdir()] == ["master.key"]


def test_raw_key_file(tmp_path: Path) -> None:
    (tmp_path / "master.key").write_bytes(RAW)
    os.chmod(tmp_path / "master.key", 0o600)
    key = load_master_key(tmp_path, None)
    assert key.matches(load_master_key(tmp_path, RAW.hex()).check_value("d"), "d")


def test_bad_key_file_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "master.key").write_text("not a key\n")
    with pytest.raises(StartupError, match="master key file") as info:
        load_master_key(tmp_path, None)
    assert "\n" not in str(info.value)


def test_wrap_binds_database_key_id_and_tenant() -> None:
    master = MasterKey.generate()
    data_key = os.urandom(32)
    wrapped = master.wrap(data_key, database="db", key_id=7, tenant="t")
    assert master.unwrap(wrapped, database="db", key_id=7, tenant="t") == data_key
    for place in (
        {"database": "other", "key_id": 7, "tenant": "t"},
        {"database": "db", "key_id": 8, "tenant": "t"},
        {"database": "db", "key_id": 7, "tenant": "u"},
    ):
        with pytest.raises(CryptoError):
            master.unwrap(wrapped, **place)  # type: ignore[arg-type]
    with pytest.raises(CryptoError):
        MasterKey.generate().unwrap(wrapped, database="db", key_id=7, tenant="t")


def test_cipher_round_trip_fresh_nonces_and_no_fallback() -> None:
    cipher = AesGcmCipher(os.urandom(32))
    n1, c1 = cipher.encrypt(b"hello", b"aad")
    n2, c2 = cipher.encrypt(b"hello", b"aad")
    assert len(n1) == 12 and n1 != n2 and c1 != c2
    assert cipher.decrypt(n1, c1, b"aad") == b"hello"
    flipped = bytes([c1[0] ^ 1]) + c1[1:]
    for args in ((n1, flipped, b"aad"), (n1, c1, b"other"), (n2, c1, b"aad")):
        with pytest.raises(CryptoError) as info:
            cipher.decrypt(*args, what="event seq 9")
        assert "event seq 9" in str(info.value)
        assert isinstance(info.value, StorageError)
    with pytest.raises(CryptoError):
        AesGcmCipher(os.urandom(32)).decrypt(n1, c1, b"aad")


def test_keys_are_never_in_repr() -> None:
    assert "hidden" in repr(MasterKey(RAW)) and RAW.hex() not in repr(MasterKey(RAW))
    assert "hidden" in repr(AesGcmCipher(RAW))
