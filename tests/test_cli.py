"""The ops CLI (issue 3): every command, its output and its one-line failures.

Commands run in-process through click's runner against data dirs written through the
service layer with real SQLite files and real crypto.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result

from nocturnus.cli import main
from nocturnus.service import tenants
from nocturnus.service.commands import TeachRule, TellFact
from nocturnus.service.databases import Databases
from nocturnus.store.crypto import parse_master_key
from nocturnus.store.dirlock import DataDirLock
from tests.logs import sqlite_log

KEY = "11" * 32
NEW_KEY = "22" * 32
COMMANDS = [
    "serve", "replay", "verify", "snapshot", "backup", "restore", "compact", "export",
    "rotate-master-key",
]


def lit(predicate: str, *args: object) -> dict[str, object]:
    return {"predicate": predicate, "args": list(args), "negated": False, "naf": False}


def populate(data_dir: Path, *, deleted: bool = True) -> None:
    """acme: 30 facts + 1 rule; globex: 10 facts, deleted (unless not ``deleted``)."""

    async def write() -> None:
        databases = Databases(data_dir, parse_master_key(KEY, "test"))
        await databases.open()
        db = databases.get("default")
        for i in range(30):
            await tenants.tell(db, "acme", TellFact("edge", (f"n{i}", i), confidence=0.5))
        await tenants.teach(db, "acme", TeachRule(lit("node", "?x"), (lit("edge", "?x", "?_"),)))
        for i in range(10):
            await tenants.tell(db, "globex", TellFact("secret", (f"globex-secret-{i}",)))
        if deleted:
            await tenants.delete_tenant(db, "globex")
        await databases.close()

    asyncio.run(write())


def cli(*args: str, key: str = KEY, **env: str) -> Result:
    runner = CliRunner(env={"NOCTURNUS_MASTER_KEY": key, **env})
    return runner.invoke(main, list(args), catch_exceptions=False)


def failed_with(result: Result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nocturnus: error: "), result.stderr
    return lines[0]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    populate(path)
    return path


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    result = cli(command, "--help")
    assert result.exit_code == 0 and "Usage:" in result.output
    assert len(result.output.splitlines()) > 4


def test_replay_prints_a_state_summary(data_dir: Path) -> None:
    result = cli("replay", "--db", "default", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("default: replayed 42 events to seq 42")
    assert lines[1] == "tenants 1, facts 30, tenant rules 1, database rules 0, seq 42"
    assert lines[2] == "  acme: 30 facts, 1 rules, last seq 31"


def test_replay_workers_option(data_dir: Path) -> None:
    # a small log replays in one process whatever --workers says (issue 3)
    lines = {
        workers: cli(
            "replay", "--db", "default", "--workers", workers, "--data-dir", str(data_dir)
        ).stdout.splitlines()
        for workers in ("1", "4")
    }
    assert lines["1"][1:] == lines["4"][1:] and "processes" not in lines["4"][0]
    assert cli("replay", "--db", "default", "--workers", "0").exit_code == 2


def test_replay_to_seq_stops_there(data_dir: Path) -> None:
    result = cli("replay", "--db", "default", "--to-seq", "10", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    assert "tenants 1, facts 10, tenant rules 0, database rules 0, seq 10" in result.stdout


def test_unknown_database_and_missing_data_dir_are_one_line(tmp_path: Path, data_dir: Path) -> None:
    line = failed_with(cli("replay", "--db", "nope", "--data-dir", str(data_dir)))
    assert "no database 'nope'" in line
    line = failed_with(cli("verify", "--data-dir", str(tmp_path / "empty")))
    assert "not a Nocturnus data dir" in line


def test_wrong_master_key_is_one_line(data_dir: Path) -> None:
    line = failed_with(cli("verify", "--data-dir", str(data_dir), key=NEW_KEY))
    assert "wrong master key" in line


def test_verify_ok_then_names_the_first_bad_seq(data_dir: Path) -> None:
    result = cli("verify", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    assert "default: OK, 42 events to seq 42 (10 shredded)" in result.stdout
    with sqlite3.connect(data_dir / "default.db") as conn:
        conn.execute("UPDATE events SET payload = zeroblob(length(payload)) WHERE seq = 7")
        conn.execute("UPDATE events SET ts_ms = 0 WHERE seq = 9")
    result = cli("verify", "--db", "default", "--data-dir", str(data_dir))
    assert "first at seq 7" in result.stdout
    assert "first bad seq 7" in failed_with(result)


def test_verify_reports_a_damaged_snapshot(data_dir: Path) -> None:
    with sqlite3.connect(data_dir / "default.db") as conn:
        conn.execute("UPDATE snapshots SET payload = zeroblob(length(payload))")
    line = failed_with(cli("verify", "--db", "default", "--data-dir", str(data_dir)))
    assert "damaged snapshot" in line


def test_snapshot_writes_every_tenant_and_refuses_a_held_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    populate(data_dir, deleted=False)
    with sqlite3.connect(data_dir / "default.db") as conn:
        conn.execute("DELETE FROM snapshots")
    with DataDirLock(data_dir).acquire("serve"):
        line = failed_with(cli("snapshot", "--data-dir", str(data_dir)))
        assert "in use by nocturnus serve" in line
    result = cli("snapshot", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    assert "default: 2 of 2 tenants snapshotted at head seq 41" in result.stdout
    with sqlite3.connect(data_dir / "default.db") as conn:
        assert conn.execute("SELECT tenant, seq FROM snapshots ORDER BY tenant").fetchall() == [
            ("acme", 31), ("globex", 41)
        ]


def export_lines(data_dir: Path, tenant: str = "acme") -> list[dict[str, object]]:
    result = cli("export", "--db", "default", "--tenant", tenant, "--format", "jsonl",
                 "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    return [orjson.loads(line) for line in result.stdout.splitlines()]


def test_export_prints_decrypted_facts_and_rules(data_dir: Path) -> None:
    lines = export_lines(data_dir)
    facts = [line for line in lines if line["type"] == "fact"]
    rules = [line for line in lines if line["type"] == "rule"]
    assert len(facts) == 30 and len(rules) == 1
    assert facts[0] | {"createdAt": 0, "validFrom": 0} == {
        "type": "fact", "predicate": "edge", "args": ["n0", 0], "negated": False,
        "scope": "main", "confidence": 0.5, "ttl": None, "validFrom": 0,
        "validUntil": None, "metadata": {}, "createdAt": 0,
    }
    assert rules[0]["head"] == {"predicate": "node", "args": ["?x"], "negated": False}
    assert rules[0]["body"] == [lit("edge", "?x", "?_")]
    line = failed_with(cli("export", "--db", "default", "--tenant", "globex",
                           "--data-dir", str(data_dir)))
    assert "no tenant 'globex'" in line


def test_export_sqlite_writes_plain_tables_of_the_decrypted_tenant(
    data_dir: Path, tmp_path: Path
) -> None:
    # issue 20: sqlite-utils serves a real need, an export any SQLite tool opens
    out = tmp_path / "acme.sqlite"
    result = cli("export", "--db", "default", "--tenant", "acme", "--format", "sqlite",
                 "--out", str(out), "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    assert "30 facts, 1 rules, 1 scopes, 31 events" in result.stderr
    assert out.stat().st_mode & 0o777 == 0o600
    lines = export_lines(data_dir)
    with sqlite3.connect(out) as conn:
        conn.row_factory = sqlite3.Row
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert tables == {"facts", "rules", "scopes", "events"}
        facts = [dict(r) for r in conn.execute("SELECT * FROM facts ORDER BY rowid")]
        rules = [dict(r) for r in conn.execute("SELECT * FROM rules")]
        scopes = [tuple(r) for r in conn.execute("SELECT name, facts, rules FROM scopes")]
        kinds = [r[0] for r in conn.execute("SELECT kind FROM events ORDER BY seq")]
    jsonl = [line for line in lines if line["type"] == "fact"]
    assert [(f["predicate"], orjson.loads(f["args"]), bool(f["negated"]), f["scope"],
             f["confidence"], f["created_at"], orjson.loads(f["metadata"])) for f in facts] == [
        (j["predicate"], j["args"], j["negated"], j["scope"], j["confidence"],
         j["createdAt"], j["metadata"]) for j in jsonl
    ]
    assert facts[0]["text"] == "edge(n0, 0)"
    assert [r["text"] for r in rules] == ["node(?x) :- edge(?x, ?_)"]
    assert scopes == [("main", 30, 0)]
    assert kinds == ["fact_told"] * 30 + ["rule_taught"]
    again = cli("export", "--db", "default", "--tenant", "acme", "--format", "sqlite",
                "--out", str(out), "--data-dir", str(data_dir))
    assert "never overwrites" in failed_with(again)
    no_out = cli("export", "--db", "default", "--tenant", "acme", "--format", "sqlite",
                 "--data-dir", str(data_dir))
    assert "needs --out" in failed_with(no_out)


def test_compact_drops_deleted_tenants_and_still_verifies(data_dir: Path) -> None:
    before = export_lines(data_dir)
    raw = (data_dir / "default.db").read_bytes()
    assert b"globex" in raw  # the tenant column and its key row name it until compaction
    result = cli("compact", "--db", "default", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    assert "dropped 11 events and 1 data keys of 1 deleted tenant(s)" in result.stdout
    for suffix in ("", "-wal", "-shm"):
        path = Path(f"{data_dir / 'default.db'}{suffix}")
        if path.exists():
            assert b"globex" not in path.read_bytes()
    verified = cli("verify", "--db", "default", "--data-dir", str(data_dir))
    assert verified.exit_code == 0, verified.output
    assert "32 events to seq 43 (0 shredded)" in verified.stdout  # 42 - 11 + marker
    assert export_lines(data_dir) == before
    again = cli("compact", "--db", "default", "--data-dir", str(data_dir))
    assert "nothing to compact" in again.stdout
    log = sqlite_log(data_dir / "default.db", "default", parse_master_key(KEY, "t"), readonly=True)
    try:
        marker = [r for r in log.read(tenant="") if r.kind == "log_compacted"]
    finally:
        log.close()
    assert [orjson.loads(m.body)["dropped_events"] for m in marker] == [11]  # type: ignore[arg-type]
    replayed = cli("replay", "--db", "default", "--data-dir", str(data_dir))
    assert "tenants 1, facts 30, tenant rules 1, database rules 0, seq 43" in replayed.stdout


def test_compaction_refuses_a_log_that_does_not_verify(data_dir: Path) -> None:
    with sqlite3.connect(data_dir / "default.db") as conn:
        conn.execute("UPDATE events SET payload = zeroblob(length(payload)) WHERE seq = 5")
    line = failed_with(cli("compact", "--db", "default", "--data-dir", str(data_dir)))
    assert "seq 5" in line and "compaction refused" in line
    with sqlite3.connect(data_dir / "default.db") as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 42


def test_a_later_removed_row_is_still_caught_after_compaction(data_dir: Path) -> None:
    assert cli("compact", "--db", "default", "--data-dir", str(data_dir)).exit_code == 0
    with sqlite3.connect(data_dir / "default.db") as conn:
        conn.execute("DELETE FROM events WHERE seq = 20")
    line = failed_with(cli("verify", "--db", "default", "--data-dir", str(data_dir)))
    assert "first bad seq 20" in line


def test_backup_restore_round_trip_on_another_data_dir(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "default.backup"
    result = cli("backup", "--db", "default", "--out", str(out), "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    assert "backed up database 'default' to seq 42" in result.stdout
    assert b"globex-secret" not in out.read_bytes() and bytes.fromhex(KEY) not in out.read_bytes()
    assert "already exists" in failed_with(
        cli("backup", "--db", "default", "--out", str(out), "--data-dir", str(data_dir))
    )

    target = tmp_path / "restored"
    assert "only be restored as 'default'" in failed_with(
        cli("restore", "--in", str(out), "--db", "other", "--data-dir", str(target))
    )
    assert "wrong master key" in failed_with(
        cli("restore", "--in", str(out), "--data-dir", str(target), key=NEW_KEY)
    )
    result = cli("restore", "--in", str(out), "--data-dir", str(target))
    assert result.exit_code == 0, result.output
    assert "restored database 'default' to seq 42" in result.stdout
    assert export_lines(target) == export_lines(data_dir)
    assert "already exists" in failed_with(
        cli("restore", "--in", str(out), "--data-dir", str(target))
    )
    replaced = cli("restore", "--in", str(out), "--replace", "--data-dir", str(target))
    assert replaced.exit_code == 0 and "replaced database 'default'" in replaced.stdout
    assert cli("verify", "--data-dir", str(target)).exit_code == 0


def test_restore_refuses_a_file_that_is_not_a_backup(tmp_path: Path, data_dir: Path) -> None:
    line = failed_with(cli("restore", "--in", str(data_dir / "default.db"),
                           "--data-dir", str(tmp_path / "x")))
    assert "not a backup" in line


def test_rotate_master_key_rewraps_and_resumes(data_dir: Path) -> None:
    before = export_lines(data_dir)
    assert "give the new master key" in failed_with(
        cli("rotate-master-key", "--data-dir", str(data_dir))
    )
    with sqlite3.connect(data_dir / "default.db") as conn:
        events_before = conn.execute("SELECT * FROM events ORDER BY seq").fetchall()
    result = cli("rotate-master-key", "--data-dir", str(data_dir), NOCTURNUS_NEW_MASTER_KEY=NEW_KEY)
    assert result.exit_code == 0, result.output
    assert "re-wrapped 3 data keys in 2 databases" in result.stdout  # acme, 2 x ""
    assert "set NOCTURNUS_MASTER_KEY to the new key" in result.stdout
    with sqlite3.connect(data_dir / "default.db") as conn:
        assert conn.execute("SELECT * FROM events ORDER BY seq").fetchall() == events_before
    assert "wrong master key" in failed_with(cli("verify", "--data-dir", str(data_dir)))
    assert cli("verify", "--data-dir", str(data_dir), key=NEW_KEY).exit_code == 0
    assert export_lines_with(data_dir, NEW_KEY) == before
    again = cli("rotate-master-key", "--data-dir", str(data_dir), NOCTURNUS_NEW_MASTER_KEY=NEW_KEY)
    assert "(2 already under the new key)" in again.stdout


def export_lines_with(data_dir: Path, key: str) -> list[dict[str, object]]:
    result = cli("export", "--db", "default", "--tenant", "acme", "--data-dir", str(data_dir), key=key)
    assert result.exit_code == 0, result.output
    return [orjson.loads(line) for line in result.stdout.splitlines()]


def test_rotate_master_key_replaces_the_key_file(data_dir: Path, tmp_path: Path) -> None:
    (data_dir / "master.key").write_text(KEY + "\n")
    (data_dir / "master.key").chmod(0o600)
    new_file = tmp_path / "new.key"
    new_file.write_text(NEW_KEY)
    result = cli("rotate-master-key", "--new-key-file", str(new_file), "--data-dir", str(data_dir), key="")
    assert result.exit_code == 0, result.output
    assert (data_dir / "master.key").read_text().strip() == NEW_KEY
    assert (data_dir / "master.key").stat().st_mode & 0o077 == 0
    assert cli("verify", "--data-dir", str(data_dir), key="").exit_code == 0
