"""Servers share a data directory; an offline command that writes the logs owns it.

A server holds a shared ``flock`` on ``<data dir>/.lock`` while it runs, so any number
of servers (the workers of ``nocturnus serve --workers N``, or several servers on one
machine) share the SQLite logs: the store arbitrates their appends and each follows the
others' (issue 16). Offline CLI commands that write the logs (``nocturnus keys …``,
compaction) take it exclusively and refuse to run beside a server, whose caches their
rewrites (keys, compaction) would invalidate. The kernel drops the lock when the
process dies, even by ``kill -9``, so a crash never leaves the directory locked.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Self

from nocturnus.errors import StartupError
from nocturnus.store.files import private_dir

LOCK_FILE = ".lock"


class DataDirLock:
    """A non-blocking lock on a data directory: exclusive, or shared between servers."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self, holder: str, *, shared: bool = False) -> DataDirLock:
        """:raises StartupError: another process holds the directory (exclusively, or
        at all when this one asks for it exclusively)."""
        private_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(os.pread(fd, 200, 0))
            os.close(fd)
            raise StartupError(
                f"data dir {self.path.parent} is in use by {holder}"
            ) from None
        os.ftruncate(fd, 0)  # shared: the newest holder names itself
        os.write(fd, f"{os.getpid()} {holder}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _holder(content: bytes) -> str:
    """Name the lock's holder from what it wrote (``"<pid> <what>"``)."""
    pid, _, what = content.decode(errors="replace").strip().partition(" ")
    if not pid.isdigit():
        return "another Nocturnus process (a running server?)"
    return f"nocturnus {what or 'process'} (pid {pid})"
