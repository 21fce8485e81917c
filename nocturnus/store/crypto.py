"""Encryption at rest: the master key, data-key wrapping and the record cipher.

Key hierarchy: one master key per server (``NOCTURNUS_MASTER_KEY`` or
``<data_dir>/master.key``) wraps one random 32-byte data key per tenant per database.
Wrapping is AES-256-GCM under the master key with a fresh 96-bit nonce and
AAD = frame("data-key", database, key_id, tenant), so a wrapped key cannot be moved to
another database, id or tenant. Records and snapshots are AES-256-GCM under the data
key with a fresh 96-bit nonce each. Nothing here ever falls back to plaintext.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from nocturnus.errors import StartupError
from nocturnus.store.errors import CryptoError
from nocturnus.store.files import private_dir
from nocturnus.store.record import frame, key_aad

log = logging.getLogger("nocturnus.store")

KEY_BYTES = 32
NONCE_BYTES = 12
MASTER_KEY_FILE = "master.key"
MASTER_KEY_ENV = "NOCTURNUS_MASTER_KEY"
# Version 2 also says "this log's chain is keyed" (issue 14): a log whose token says so
# and whose chain is plain was downgraded by someone without the master key.
_CHECK_PLAINTEXTS = {
    b"nocturnus master key check v1": 1,
    b"nocturnus master key check v2 keyed chain": 2,
}


class AesGcmCipher:
    """AES-256-GCM with a fresh random 96-bit nonce per message.

    A wrong key or any flipped bit in nonce, ciphertext, tag or AAD raises
    :class:`CryptoError`; there is no unauthenticated path.
    """

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"AES-256-GCM needs a {KEY_BYTES}-byte key")
        self._aead = AESGCM(key)

    @property
    def aead(self) -> AESGCM:
        """The underlying AEAD, for the log's hot read loop (skips a Python frame)."""
        return self._aead

    def encrypt(self, plaintext: bytes, aad: bytes) -> tuple[bytes, bytes]:
        """Return ``(nonce, ciphertext_with_tag)``."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce, self._aead.encrypt(nonce, plaintext, aad)

    def decrypt(
        self, nonce: bytes, ciphertext: bytes, aad: bytes, *, what: str = "record"
    ) -> bytes:
        """Return the plaintext.

        :raises CryptoError: naming ``what`` when the tag does not verify.
        """
        try:
            return self._aead.decrypt(nonce, ciphertext, aad)
        except (InvalidTag, ValueError) as e:
            raise CryptoError(f"cannot decrypt {what}: authentication failed") from e

    def __repr__(self) -> str:
        return "AesGcmCipher(<key hidden>)"


class MasterKey:
    """The server's key-encryption key: wraps and unwraps 32-byte data keys."""

    __slots__ = ("_cipher",)

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"the master key must be {KEY_BYTES} bytes")
        self._cipher = AesGcmCipher(key)

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(os.urandom(KEY_BYTES))

    def wrap(
        self, data_key: bytes, *, database: str, key_id: int, tenant: str
    ) -> bytes:
        """Return ``nonce ‖ ciphertext ‖ tag`` of ``data_key`` bound to its place."""
        nonce, ct = self._cipher.encrypt(data_key, key_aad(database, key_id, tenant))
        return nonce + ct

    def unwrap(
        self, wrapped: bytes, *, database: str, key_id: int, tenant: str
    ) -> bytes:
        """Return the data key.

        :raises CryptoError: the master key is wrong or the wrapped key was altered.
        """
        data_key = self._cipher.decrypt(
            wrapped[:NONCE_BYTES],
            wrapped[NONCE_BYTES:],
            key_aad(database, key_id, tenant),
            what=f"data key {key_id}",
        )
        if len(data_key) != KEY_BYTES:
            raise CryptoError(f"data key {key_id} has the wrong length")
        return data_key

    def check_value(self, database: str, version: int = 2) -> bytes:
        """Return a token that only this master key can open, stored once per log.

        It lets :meth:`Sealer.open` tell a wrong master key from a damaged data key,
        and refuse a wrong key even before any data key exists. Version 2 (every log
        since issue 14) also vouches that the log's chain is keyed.
        """
        plaintext = next(p for p, v in _CHECK_PLAINTEXTS.items() if v == version)
        nonce, ct = self._cipher.encrypt(plaintext, frame("key-check", database))
        return nonce + ct

    def check_version(self, check_value: bytes, database: str) -> int | None:
        """The version of a token this master key made for ``database``; None when it
        did not make it (a wrong key, or a token of another database)."""
        try:
            plain = self._cipher.decrypt(
                check_value[:NONCE_BYTES],
                check_value[NONCE_BYTES:],
                frame("key-check", database),
            )
        except CryptoError:
            return None
        return _CHECK_PLAINTEXTS.get(plain)

    def matches(self, check_value: bytes, database: str) -> bool:
        """Return whether ``check_value`` was made by this master key for ``database``."""
        return self.check_version(check_value, database) is not None

    def wrap_secret(self, secret: bytes, purpose: str, database: str) -> bytes:
        """``nonce ‖ ciphertext ‖ tag`` of a per-log secret (the chain key), bound to
        its purpose and database."""
        nonce, ct = self._cipher.encrypt(secret, frame(purpose, database))
        return nonce + ct

    def unwrap_secret(self, wrapped: bytes, purpose: str, database: str) -> bytes:
        """:raises CryptoError: the master key is wrong or the bytes were altered."""
        return self._cipher.decrypt(
            wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], frame(purpose, database),
            what=purpose,
        )

    def __repr__(self) -> str:
        return "MasterKey(<hidden>)"


def parse_master_key(text: str, source: str) -> MasterKey:
    """Parse 32 bytes written as 64 hex characters or base64 (standard or URL-safe).

    :raises StartupError: one line naming ``source``; the value itself is never echoed.
    """
    value = text.strip()
    if len(value) == 2 * KEY_BYTES:
        try:
            return MasterKey(bytes.fromhex(value))
        except ValueError:
            pass
    for altchars in (None, b"-_"):
        try:
            raw = base64.b64decode(value.encode("ascii"), altchars, validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            continue
        if len(raw) == KEY_BYTES:
            return MasterKey(raw)
    raise StartupError(
        f"{source} is not a valid master key: expected 32 bytes as 64 hex characters "
        f"or base64 (got {len(value)} characters)"
    )


def load_master_key(data_dir: Path, env_value: str | None) -> MasterKey:
    """Return the master key from ``env_value``, else from ``data_dir/master.key``.

    With neither, a new random key is written to ``data_dir/master.key`` (mode 0600,
    64 hex characters) and a loud warning is logged once: whoever loses that file loses
    every database in the data dir, and whoever copies it can read them.

    :raises StartupError: a malformed value or key file, in one line.
    """
    if env_value is not None and env_value.strip():
        return parse_master_key(env_value, MASTER_KEY_ENV)
    path = Path(data_dir) / MASTER_KEY_FILE
    try:
        return _read_key_file(path)
    except FileNotFoundError:
        pass
    return _create_key_file(path)


def _read_key_file(path: Path) -> MasterKey:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as e:
        raise StartupError(f"cannot read master key file {path}: {e.strerror}") from e
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "master key file %s is readable by group or others (mode %o); chmod 600 it",
            path,
            stat.S_IMODE(mode),
        )
    if len(data) == KEY_BYTES:
        return MasterKey(data)
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as e:
        raise StartupError(
            f"master key file {path} is not a valid master key: expected 32 raw bytes, "
            "64 hex characters or base64"
        ) from e
    return parse_master_key(text, f"master key file {path}")


def _create_key_file(path: Path) -> MasterKey:
    try:
        private_dir(path.parent)
        key = os.urandom(KEY_BYTES)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, key.hex().encode("ascii") + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            # link() refuses to replace, so two servers starting at once agree on one key.
            os.link(tmp, path)
        except FileExistsError:
            tmp.unlink()
            return _read_key_file(path)
        tmp.unlink()
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as e:
        raise StartupError(f"cannot create master key file {path}: {e.strerror}") from e
    message = (
        f"NO MASTER KEY GIVEN: created a new one in {path}. Every database in this data "
        f"dir is encrypted under it: back it up apart from the data, keep it secret, or "
        f"set {MASTER_KEY_ENV} instead."
    )
    log.warning(message)  # once: a second copy through warnings.warn was noise
    return MasterKey(key)
