"""Files and directories the store creates are private to the server's user (issue 14,
item 8): a data dir readable by others would hand out ciphertext, wrapped keys and
tenant names to anyone on the machine."""

from __future__ import annotations

import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) with mode 0700 if it does not exist.

    An existing directory keeps its mode: it is the operator's.
    """
    path = Path(path)
    if not path.is_dir():
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        os.chmod(path, DIR_MODE)  # the umask may have taken bits mkdir was given
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty with mode 0600 unless it exists (SQLite then opens it and
    gives its -wal and -shm files the same mode)."""
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    os.close(fd)
    return path
