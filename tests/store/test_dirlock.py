"""The data dir lock: servers share it (issue 16), an offline writer owns it."""

from __future__ import annotations

from pathlib import Path

import pytest

from nocturnus.errors import StartupError
from nocturnus.store.dirlock import DataDirLock


def test_servers_share_the_data_dir_and_an_offline_writer_waits_for_all_of_them(
    tmp_path: Path,
) -> None:
    first = DataDirLock(tmp_path).acquire("serve", shared=True)
    second = DataDirLock(tmp_path).acquire("serve", shared=True)
    with pytest.raises(StartupError, match="in use by nocturnus serve"):
        DataDirLock(tmp_path).acquire("nocturnus keys")
    first.release()
    with pytest.raises(StartupError):
        DataDirLock(tmp_path).acquire("nocturnus keys")
    second.release()
    with DataDirLock(tmp_path).acquire("nocturnus keys"), pytest.raises(StartupError):
        DataDirLock(tmp_path).acquire("serve", shared=True)
