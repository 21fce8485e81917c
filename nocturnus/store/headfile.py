"""The head file: a SQLite log's committed head, readable by any process with one pread.

Beside ``<database>.db`` lies ``<database>.db-head``: the head seq, the newest seq its
writer knows another writer wrote, the id of the writer that recorded it, and a check
word. Every transaction that records a head writes it while it still holds the write
lock (``BEGIN IMMEDIATE``), just before its commit, so the writes come in seq order and
the file never lags a commit: once an append is acknowledged, every process reading the
file sees a value at least its seq. It may run ahead of the log for the moment between
the write and the commit (or after a rolled-back transaction, until the next one); a
reader therefore only learns from it *that* it may be behind, and reads the rows (and
the position it reached) from the log itself. The writer id lets a process tell its own
records from another's: when the newest record is its own, every row after the seq it
names as the others' newest is its own, so its reads need not wait for its own commits
in flight (what a single server sees all the time). Why not ``PRAGMA data_version``: that is a
query, per connection, in a thread; this is a syscall on the event loop, the price of a
freshness check on every read (issue 16).

A torn read (a pread racing the pwrite) fails the check word and is read again.

The file also orders the writers: each takes an exclusive ``flock`` on it before
SQLite's write lock (:meth:`HeadWriter.turn`). SQLite makes a writer that finds the lock
taken sleep and try again (1, 2, 5, 10 ms ...), so two processes appending at full speed
spent most of their time asleep; the kernel hands a ``flock`` to the next waiter the
moment it is released.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import secrets
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SUFFIX = "-head"
_LAYOUT = struct.Struct("<QQQQ")
_CHECK = 0x9E3779B97F4A7C15
_UNPACK = _LAYOUT.unpack_from
_TORN_RETRIES = 100


def head_path(log_path: Path) -> Path:
    """Where the head file of the log at ``log_path`` lies."""
    return Path(f"{log_path}{SUFFIX}")


class HeadWriter:
    """The write side, held by a writable recorder (one per connection, one thread)."""

    def __init__(self, log_path: Path) -> None:
        self.path = head_path(log_path)
        self.writer = secrets.randbits(63) | 1  # never 0: no file reads as ours
        self._fd: int | None = None

    def write(self, seq: int, foreign: int) -> None:
        """Record ``seq`` as the head and ``foreign`` as the newest seq another writer
        wrote as far as this one knows (call under the log's write lock).

        :raises OSError: the file cannot be written.
        """
        writer = self.writer
        check = seq ^ foreign ^ writer ^ _CHECK
        os.pwrite(self._open(), _LAYOUT.pack(seq, foreign, writer, check), 0)

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Hold the writers' turn (an exclusive ``flock``) for a write transaction.

        :raises OSError: the file cannot be opened or locked.
        """
        fd = self._open()
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _open(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        return self._fd

    def close(self) -> None:
        """Release the file descriptor."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class HeadProbe:
    """The read side: what any process reads before it answers (on the event loop).

    The file is mapped once: a read is a copy out of the page cache the writers'
    ``pwrite`` fills, no system call (every request pays for it).
    """

    def __init__(self, log_path: Path) -> None:
        self.path = head_path(log_path)
        self._map: mmap.mmap | None = None

    def read(self) -> tuple[int, int, int] | None:
        """The newest record: (head seq, the newest seq its writer knows another writer
        wrote, the writer's id); None when there is no (readable) head file yet."""
        if self._map is None:
            try:
                fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                return None
            try:
                if os.fstat(fd).st_size < _LAYOUT.size:
                    return None  # being created: its first record comes at once
                self._map = mmap.mmap(fd, _LAYOUT.size, prot=mmap.PROT_READ)
            finally:
                os.close(fd)
        for _ in range(_TORN_RETRIES):
            seq, foreign, writer, check = _UNPACK(self._map)
            if seq ^ foreign ^ writer ^ _CHECK == check:
                return seq, foreign, writer
        return None

    def close(self) -> None:
        """Unmap the file."""
        if self._map is not None:
            self._map.close()
            self._map = None
