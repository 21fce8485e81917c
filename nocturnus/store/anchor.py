"""The head anchor: each SQLite log's head, also kept outside the log (issue 14, item 6).

A commit in WAL mode is durable once its frames are in the ``-wal`` file; until a
checkpoint copies them into the main file, the ``-wal`` file is the only copy. If it is
truncated or lost (a failing disk, a copy of the ``.db`` without its ``-wal``, an older
copy of the files put back), SQLite opens the log as it was before those commits: the
rows and the head recorded with them go together, so the chain and the head check
agree with each other, and acknowledged writes vanished without a trace. The anchor is
that trace: after every commit the sealer records the new head (seq and chain hash) in
``<log>.anchor``, and a log whose head is behind its anchor is refused at start-up and
reported by ``verify``.

**Format.** Two fixed-size slots, each ``MAGIC ‖ seq ‖ hash ‖ MAC`` with
``MAC = HMAC-SHA256(anchor key, frame("anchor", database) ‖ seq ‖ hash)``; the anchor key
is derived from the log's chain key (:meth:`~nocturnus.store.chain.Chain.subkey`), so
only a master-key holder can write an anchor that verifies, and key rotation leaves it
valid. The valid slot with the highest seq is the anchor. A write replaces the *other*
slot, so a write torn by a crash leaves the previous anchor whole.

**Several processes.** Each write takes ``flock`` on the file, reads both slots and
writes only if its head is newer: the anchor only moves forward, whatever order
processes committing to the same file write theirs in.

**Durability.** The anchor is written after the commit's fsync and is not fsync'd
itself: it can lag the log (after a power loss, by what the OS had not yet written
back) but never lead it, so it never refuses a log that lost nothing. After a process
crash (``kill -9``, OOM) it is exact. Its cost per group commit is a ``flock``, a
256-byte ``pread`` and ``pwrite`` and three HMACs (``benchmarks/anchor.py``).

PostgreSQL needs none: a commit there is durable in the server's own WAL, which it
replays whole or refuses to start; the PostgreSQL recorder has no anchor path.
"""

from __future__ import annotations

import fcntl
import hmac
import os
import struct
from pathlib import Path

from nocturnus.store.chain import Break
from nocturnus.store.errors import StorageError
from nocturnus.store.files import FILE_MODE
from nocturnus.store.record import frame
from nocturnus.store.recorder import Tip

MAGIC = b"NCTANCH1"
_SLOT = struct.Struct(">8sq32s32s")
_SEQ = struct.Struct(">q")
SLOT_BYTES = 128  # each slot sits alone in its 128 bytes (a sector holds both)
SLOTS = 2
FILE_BYTES = SLOT_BYTES * SLOTS


class AnchorDamaged(StorageError):
    """The anchor file holds no slot that verifies: written by someone without the
    master key, or damaged."""

    code = "ANCHOR_DAMAGED"


class Anchor:
    """The anchor file of one log. Not thread-safe: it belongs to one sealer."""

    def __init__(self, path: Path, key: bytes, database: str, *, writable: bool) -> None:
        """Open (``writable``: create, mode 0600) the anchor at ``path``.

        :raises StorageError: the file cannot be opened or created.
        """
        self.path = Path(path)
        self._key = key
        self._prefix = frame("anchor", database)  # then seq and hash, fixed widths
        self._fd: int | None = None
        # the file's bytes as last read or written here, and their verified slots:
        # while nobody else writes, an advance needs no MAC but the new slot's
        self._seen: tuple[bytes, dict[int, Tip]] | None = None
        self.writable = writable
        try:
            if writable:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, FILE_MODE)
            elif self.path.exists():
                self._fd = os.open(self.path, os.O_RDONLY)
        except OSError as e:
            raise StorageError(f"cannot open the head anchor {self.path}: {e.strerror}") from e

    def read(self) -> Tip | None:
        """The anchored head; None when nothing was anchored yet (no file, or empty).

        :raises AnchorDamaged: the file holds bytes but no slot that verifies.
        """
        if self._fd is None:
            return None
        slots = self._slots()
        if not slots:
            return None
        return max(slots.values())

    def advance(self, tip: Tip) -> None:
        """Record ``tip`` as the head unless the anchor holds a newer one.

        :raises OSError: the file could not be written (the caller logs it: the commit
            it follows is durable whatever happens here).
        """
        fd = self._fd
        assert fd is not None and self.writable, "advance() on a read-only anchor"
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            try:
                slots = self._slots()
            except AnchorDamaged:
                slots = {}  # refused at open; a file damaged since is rewritten
            newest = max(slots.items(), key=lambda item: item[1], default=None)
            if newest is not None and newest[1].seq >= tip.seq:
                return
            target = 1 - newest[0] if newest is not None else 0
            slot = self._pack(tip)
            os.pwrite(fd, slot, target * SLOT_BYTES)
            if self._seen is not None:  # what a pread now returns, already verified
                seen, start = self._seen[0], target * SLOT_BYTES
                data = seen[:start].ljust(start, b"\0") + slot + seen[start + SLOT_BYTES :]
                self._seen = (data, {**slots, target: tip})
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def behind(self, anchored: Tip | None, head: Tip) -> Break | None:
        """Where ``head`` falls short of the ``anchored`` head (read *before* it, so a
        commit landing in between can only put the head ahead), or None."""
        if anchored is None or head.seq > anchored.seq:
            return None
        remedy = (
            "restore the database from a backup, or accept the loss by removing "
            f"{self.path.name}"
        )
        if head.seq < anchored.seq:
            return Break(
                head.seq + 1,
                f"events {head.seq + 1}..{anchored.seq} are missing: the head anchor "
                f"{self.path.name} recorded seq {anchored.seq} when they were committed "
                "(a truncated or lost -wal file, or an older copy of the log put back); "
                + remedy,
            )
        if head.hash != anchored.hash:
            return Break(
                head.seq,
                f"the last event differs from the one the head anchor {self.path.name} "
                "recorded at the same seq (the log was rewritten); " + remedy,
            )
        return None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # -- slots ---------------------------------------------------------------------

    def _mac(self, seq: int, hash_: bytes) -> bytes:
        return hmac.digest(self._key, self._prefix + _SEQ.pack(seq) + hash_, "sha256")

    def _pack(self, tip: Tip) -> bytes:
        slot = _SLOT.pack(MAGIC, tip.seq, tip.hash, self._mac(tip.seq, tip.hash))
        return slot.ljust(SLOT_BYTES, b"\0")

    def _slots(self) -> dict[int, Tip]:
        """Slot index -> the head it holds, for each slot that verifies.

        :raises AnchorDamaged: bytes are there but no slot verifies.
        """
        assert self._fd is not None
        data = os.pread(self._fd, FILE_BYTES, 0)
        if self._seen is not None and self._seen[0] == data:
            return dict(self._seen[1])
        if not data.strip(b"\0"):
            self._seen = (data, {})
            return {}
        found: dict[int, Tip] = {}
        for index in range(SLOTS):
            raw = data[index * SLOT_BYTES : index * SLOT_BYTES + _SLOT.size]
            if len(raw) < _SLOT.size:
                continue
            magic, seq, hash_, mac = _SLOT.unpack(raw)
            if magic == MAGIC and hmac.compare_digest(mac, self._mac(seq, hash_)):
                found[index] = Tip(seq, hash_)
        if not found:
            raise AnchorDamaged(
                f"the head anchor {self.path} does not verify: it was changed by someone "
                "without the master key or damaged; if the log is known to be whole "
                "(nocturnus verify), remove the file to anchor the log at its head"
            )
        self._seen = (data, dict(found))
        return found

