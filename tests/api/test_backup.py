"""An online backup restored on another data dir answers identically (issue 3)."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import orjson
from click.testing import CliRunner

from nocturnus.cli import main
from tests.api.test_restart import READS, populate, snapshot
from tests.server import TEST_MASTER_KEY, Server


def cli(*args: str) -> str:
    result = CliRunner(env={"NOCTURNUS_MASTER_KEY": TEST_MASTER_KEY}).invoke(
        main, list(args), catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return result.stdout


def noise(server: Server, stop: threading.Event, sent: list[int]) -> None:
    """Keep writing to another tenant while the backup runs."""
    with httpx.Client(base_url=server.url, timeout=10) as http:
        n = 0
        while not stop.is_set():
            n += 1
            r = http.post("/tell", headers={"X-Tenant-ID": "noise"},
                          json={"predicate": "n", "args": [n]})
            assert r.status_code == 200, r.text
            sent.append(n)


def noise_facts(server: Server) -> set[int]:
    r = server.request("POST", "/query", tenant="noise", json={"predicate": "n", "args": ["?n"]})
    assert r.status_code == 200
    return {row["args"][0] for row in r.json()["results"]}


def test_online_backup_restored_elsewhere_answers_identically(tmp_path: Path) -> None:
    source = Server(tmp_path / "a" / "data").start()
    populate(source)
    before = snapshot(source)
    stop, sent = threading.Event(), []
    writer = threading.Thread(target=noise, args=(source, stop, sent))
    writer.start()
    try:
        while len(sent) < 20:
            stop.wait(0.01)
        for database in ("default", "other"):
            out = cli("backup", "--db", database, "--out", str(tmp_path / f"{database}.bak"),
                      "--data-dir", str(source.data_dir))
            assert f"backed up database '{database}'" in out
    finally:
        stop.set()
        writer.join()
    written = noise_facts(source)
    assert source.stop() == 0

    target_dir = tmp_path / "b" / "data"
    for database in ("default", "other"):
        out = cli("restore", "--in", str(tmp_path / f"{database}.bak"), "--data-dir", str(target_dir))
        assert f"restored database '{database}'" in out
    assert "default: OK" in cli("verify", "--data-dir", str(target_dir))
    target = Server(target_dir).start()
    try:
        after = snapshot(target)
        assert after[:-1] == before[:-1]  # every read route, byte for byte
        tenants = orjson.loads(after[-1])["tenants"]
        assert [t for t in tenants if t["name"] != "noise"] == orjson.loads(before[-1])["tenants"]
        restored = noise_facts(target)
        # One consistent cut: a prefix of what the writer had acknowledged.
        assert restored == set(range(1, len(restored) + 1)) and restored <= written
        assert len(restored) >= 20
        listed = target.request("GET", "/databases").json()["databases"]
        assert sorted(d["name"] for d in listed) == ["default", "other"]
    finally:
        assert target.stop() == 0


def test_no_plaintext_in_the_data_dir_snapshots_and_backups_included(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", env={"NOCTURNUS_SNAPSHOT_EVERY": "3"}).start()
    secret = "s3cr3t-" + "x7q" * 4
    for i in range(7):
        r = server.request("POST", "/tell", tenant="acme",
                           json={"predicate": "holds", "args": [f"{secret}{i}", i]})
        assert r.status_code == 200
    backup = tmp_path / "default.bak"
    cli("backup", "--db", "default", "--out", str(backup), "--data-dir", str(server.data_dir))
    assert server.stop() == 0  # writes the shutdown snapshot too
    assert "3 snapshots" in cli("verify", "--db", "default", "--data-dir", str(server.data_dir))
    files = [p for p in server.data_dir.iterdir() if p.is_file()] + [backup]
    for path in files:
        data = path.read_bytes()
        assert secret.encode() not in data, path.name
        assert secret.encode("utf-16-le") not in data, path.name


def reads_of(server: Server, database: str) -> list[bytes]:
    return [
        server.request(method, path, tenant="acme", database=database, json=body).content
        for method, path, body in READS
    ]


def test_a_server_made_backup_restores_with_the_cli(tmp_path: Path) -> None:
    """Issue 14, item 7: POST /admin/backups wrote files `nocturnus restore` refused (no
    backup_info), and ignored ?db= (it backed up `default` and said so)."""
    source = Server(tmp_path / "a" / "data").start()
    try:
        populate(source)
        before = reads_of(source, "other")
        made = source.request("POST", "/admin/backups?db=other")
        assert made.status_code == 201, made.text
        assert made.json()["database"] == "other"
        path = Path(made.json()["path"])
        assert path.parent == source.data_dir / "backups" and path.is_file()
        assert path.stat().st_mode & 0o777 == 0o600
        disagree = source.request("POST", "/admin/backups?db=other", json={"database": "default"})
        assert disagree.status_code == 400 and disagree.json()["code"] == "VALIDATION_ERROR"
        missing = source.request("POST", "/admin/backups?db=nope")
        assert missing.status_code == 404
    finally:
        source.stop()
    target_dir = tmp_path / "b" / "data"
    out = cli("restore", "--in", str(path), "--data-dir", str(target_dir))
    assert "restored database 'other'" in out
    target = Server(target_dir).start()
    try:
        assert reads_of(target, "other") == before
    finally:
        target.stop()


def test_backups_older_than_the_retention_are_pruned(tmp_path: Path) -> None:
    """Issue 14, item 7: a deleted tenant's key stays readable in older backups; the
    server keeps them NOCTURNUS_BACKUP_RETENTION days, then they are gone."""
    import os
    import time

    data_dir = tmp_path / "data"
    backups = data_dir / "backups"
    backups.mkdir(parents=True)
    old = backups / "default-1.nocturnus-backup"
    old.write_bytes(b"an old backup")
    week_ago = time.time() - 8 * 86_400
    os.utime(old, (week_ago, week_ago))
    server = Server(data_dir, env={"NOCTURNUS_BACKUP_RETENTION": "7"}).start()
    try:
        deadline = time.monotonic() + 10
        while old.exists() and time.monotonic() < deadline:  # pruned at start
            time.sleep(0.05)
        assert not old.exists()
        made = server.request("POST", "/admin/backups")
        assert made.status_code == 201 and made.json()["pruned"] == 0
        kept = Path(made.json()["path"])
        os.utime(kept, (week_ago, week_ago))
        again = server.request("POST", "/admin/backups")
        assert again.json()["pruned"] == 1 and not kept.exists()
    finally:
        server.stop()
