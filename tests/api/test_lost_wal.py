"""A truncated -wal file is detected, not silent (issue 14, item 6).

Regression: 300 acknowledged tells, kill -9, the ``-wal`` file truncated to half,
restart: half the facts were gone, ``/health`` said ok and ``verify`` said OK (SQLite
opens the log as it was before the lost commits, rows and recorded head alike). Now
the head anchor kept beside the log knows the head those tells reached.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from tests.server import TEST_MASTER_KEY, Server, free_port

TELLS = 300


def nocturnus(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NOCTURNUS_MASTER_KEY": TEST_MASTER_KEY}
    return subprocess.run(
        [sys.executable, "-m", "nocturnus", *args],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )


def test_a_truncated_wal_stops_the_start_naming_the_lost_events(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = Server(data_dir, env={"NOCTURNUS_VERIFY_INTERVAL_S": "0"}).start()
    for i in range(TELLS):
        told = server.request("POST", "/tell", tenant="acme",
                              json={"predicate": "p", "args": [i]})
        assert told.status_code == 200, told.text  # acknowledged: durable
    assert server.stop(signal.SIGKILL) == -signal.SIGKILL
    wal = data_dir / "default.db-wal"
    size = wal.stat().st_size
    assert size > 0, "the tells should still be in the -wal file (no checkpoint yet)"
    os.truncate(wal, size // 2)

    refused = nocturnus("serve", "--port", str(free_port()), "--data-dir", str(data_dir))
    assert refused.returncode != 0
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in refused.stderr, refused.stderr
    line = lines[0]
    assert line.startswith("nocturnus: error: cannot open database 'default'")
    missing = re.search(r"events (\d+)\.\.(\d+) are missing", line)
    assert missing is not None, line
    assert int(missing[2]) >= TELLS > int(missing[1])  # every tell had a seq of its own
    assert "default.db.anchor" in line and "restore the database from a backup" in line

    verified = nocturnus("verify", "--db", "default", "--data-dir", str(data_dir))
    assert verified.returncode != 0 and "head anchor" in verified.stdout, verified

    # Accepting the loss is explicit: remove the anchor; the server then starts on what
    # the log still holds, and anchors it anew.
    (data_dir / "default.db.anchor").unlink()
    accepted = Server(data_dir, env={"NOCTURNUS_VERIFY_INTERVAL_S": "0"}).start()
    try:
        kept = accepted.request("POST", "/ask", tenant="acme",
                                json={"predicate": "p", "args": ["?x"]}).json()["count"]
        assert 0 <= kept < TELLS
    finally:
        assert accepted.stop() == 0
    assert "no head anchor yet" in accepted.output()
