"""Operations on a data dir: replay, verify, snapshot, backup, restore, compact, export,
rotate-master-key.

They work on the files directly. ``replay``, ``verify``, ``export`` and ``backup`` only
read (``backup`` is the online one: run it while the server serves); ``snapshot``,
``compact``, ``restore`` and ``rotate-master-key`` write, take the data dir's lock and
refuse while a server holds it.
"""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack
from pathlib import Path

import click

from nocturnus.cli.options import data_dir_option, data_dir_settings
from nocturnus.cli.output import fail, failing_cleanly, progress_bar
from nocturnus.errors import StartupError

NEW_MASTER_KEY_ENV = "NOCTURNUS_NEW_MASTER_KEY"


@click.command()
@click.option("--db", "database", required=True, help="Database to replay")
@click.option(
    "--to-seq", type=click.IntRange(min=0), default=None, help="Stop after this seq"
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Processes replaying tenants at once [one per CPU; 1: this process only]",
)
@data_dir_option
def replay(
    database: str, to_seq: int | None, workers: int | None, data_dir: Path | None
) -> None:
    """Rebuild a database's state from seq 0 and print a summary (read-only).

    Snapshots are not used: this is the check that the log alone rebuilds the state.
    Prints tenants, facts, rules and the seq reached, then one line per tenant. A big
    log's tenants are split over several processes (each reads, decrypts and
    rebuilds its own tenants); small logs replay in this process.
    """
    from nocturnus.service.datadir import existing_master_key, store_of
    from nocturnus.service.maintenance import replay_database

    with failing_cleanly(), ExitStack() as stack:
        settings = data_dir_settings(data_dir)
        store = stack.enter_context(store_of(settings))
        key = existing_master_key(settings)
        with progress_bar(f"replaying {database}") as progress:
            summary = replay_database(
                store,
                key,
                database,
                to_seq=to_seq,
                progress=progress,
                workers=workers or os.cpu_count() or 1,
            )
        for line in summary.lines():
            click.echo(line)


@click.command()
@click.option(
    "--db", "database", default=None, help="Database to verify [every database]"
)
@data_dir_option
def verify(database: str | None, data_dir: Path | None) -> None:
    """Check the hash chain, every GCM tag and every snapshot (read-only).

    Prints one line per database; on a problem, exits 1 naming the first bad seq.
    """
    from nocturnus.service.datadir import (
        existing_master_key,
        require_data_dir,
        store_of,
    )
    from nocturnus.service.maintenance import log_names, verify_database

    with failing_cleanly(), ExitStack() as stack:
        settings = data_dir_settings(data_dir)
        store = stack.enter_context(store_of(settings))
        require_data_dir(store)
        key = existing_master_key(settings)
        names = [database] if database else log_names(store)
        bad = []
        for name in names:
            with progress_bar(f"verifying {name}") as progress:
                report = verify_database(store, key, name, progress)
            click.echo(report.summary())
            if not report.ok:
                bad.append(report)
        if bad:
            first = bad[0]
            where = (
                f"first bad seq {first.first_bad_seq}"
                if first.first_bad_seq is not None
                else "a damaged snapshot"
            )
            fail(f"verify failed for database {first.database!r}: {where} (see above)")


@click.command()
@click.option(
    "--db", "database", default=None, help="Database to snapshot [every database]"
)
@data_dir_option
def snapshot(database: str | None, data_dir: Path | None) -> None:
    """Write a snapshot of every tenant now (offline: stop the server first)."""
    from nocturnus.service.datadir import (
        existing_master_key,
        lock_data_dir,
        read_registry,
        require_data_dir,
        store_of,
    )
    from nocturnus.service.maintenance import snapshot_database

    with failing_cleanly(), ExitStack() as stack:
        settings = data_dir_settings(data_dir)
        store = stack.enter_context(store_of(settings))
        require_data_dir(store)
        key = existing_master_key(settings)
        with lock_data_dir(settings.data_dir, "snapshot"):
            names = (
                [database]
                if database
                else sorted(read_registry(store, key).databases)
            )
            for name in names:
                with progress_bar(f"snapshotting {name}") as progress:
                    result = snapshot_database(store, key, name, progress)
                click.echo(
                    f"{name}: {result.written} of {result.tenants} tenants snapshotted "
                    f"at head seq {result.head}"
                )


@click.command()
@click.option("--db", "database", required=True, help="Database to back up")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="New backup file to write",
)
@data_dir_option
def backup(database: str, out: Path, data_dir: Path | None) -> None:
    """Copy a database consistently while the server runs (SQLite backup API).

    The file holds the events, snapshots and wrapped data keys, never the master key:
    keep the master key separately, restoring needs it.
    """
    from nocturnus.service.backup import backup_database, describe
    from nocturnus.service.datadir import existing_master_key, store_of

    with failing_cleanly(), ExitStack() as stack:
        settings = data_dir_settings(data_dir)
        store = stack.enter_context(store_of(settings))
        key = existing_master_key(settings)
        info = backup_database(store, key, database, out)
        size = out.stat().st_size
        click.echo(f"backed up {describe(info)} to {out} ({size:,} bytes)")


@click.command()
@click.option(
    "--in",
    "source",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Backup file made by `nocturnus backup`",
)
@click.option(
    "--db", "database", default=None, help="Database name [the one in the backup]"
)
@click.option(
    "--replace", is_flag=True, help="Replace an existing database of that name"
)
@data_dir_option
def restore(
    source: Path, database: str | None, replace: bool, data_dir: Path | None
) -> None:
    """Restore a backup into a data dir and register it (offline).

    The backup is verified in full first; it needs the master key it was written
    under (NOCTURNUS_MASTER_KEY or master.key in the data dir).
    """
    from nocturnus.service.backup import describe, restore_database
    from nocturnus.service.datadir import existing_master_key, lock_data_dir, store_of

    with failing_cleanly(), ExitStack() as stack:
        settings = data_dir_settings(data_dir)
        store = stack.enter_context(store_of(settings))
        key = existing_master_key(settings)
        with (
            lock_data_dir(settings.data_dir, "restore"),
            progress_bar("verifying backup") as progress,
        ):
            result = restore_database(
                store,
                key,
                source,
                database,
                scratch_dir=settings.data_dir,
                replace=replace,
                progress=progress,
            )
        verb = "replaced" if result.replaced else "restored"
        click.echo(f"{verb} {describe(result.info)} into {result.where}")


@click.command()
@click.option("--db", "database", required=True, help="Database to compact")
@data_dir_option
def compact(database: str, data_dir: Path | None) -> None:
    """Drop deleted (crypto-shredded) tenants' rows and re-chain (offline).

    The log is verified first and left untouched if it does not verify. A
    `log_compacted` marker event records the compaction in the chain.
    """
    from nocturnus.service.datadir import existing_master_key, lock_data_dir, store_of
    from nocturnus.service.maintenance import compact_database

    with failing_cleanly(), ExitStack() as stack:
        settings = data_dir_settings(data_dir)
        store = stack.enter_context(store_of(settings))
        key = existing_master_key(settings)
        with (
            lock_data_dir(settings.data_dir, "compact"),
            progress_bar(f"compacting {database}") as progress,
        ):
            done = compact_database(store, key, database, progress)
        if done is None:
            click.echo(f"{database}: nothing to compact (no deleted tenant's data)")
        else:
            click.echo(
                f"{database}: dropped {done.dropped_events} events and "
                f"{done.dropped_keys} data keys of {len(done.tenants)} deleted "
                f"tenant(s), re-chained {done.rechained} events"
            )


@click.command()
@click.option("--db", "database", required=True, help="Database of the tenant")
@click.option("--tenant", required=True, help="Tenant to export")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "sqlite"]),
    default="jsonl",
    show_default=True,
    help="jsonl: lines on stdout or --out; sqlite: tables in a new file --out",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File to write, never overwritten [stdout; required for sqlite]",
)
@data_dir_option
def export(
    database: str, tenant: str, fmt: str, out: Path | None, data_dir: Path | None
) -> None:
    """Export a tenant's decrypted facts and rules from a data dir (read-only, offline).

    For the text syntax from a running server, use `nocturnus export-text`.

    jsonl: facts as POST /tell bodies plus createdAt, rules as POST /teach bodies plus
    id and createdAt. sqlite: tables facts, rules, scopes and events (the tenant's
    decrypted log) in a new SQLite file that Datasette or any SQLite tool opens. The
    output is plaintext: treat it like the data itself.
    """
    from nocturnus.service.datadir import existing_master_key, store_of
    from nocturnus.service.export import export_sqlite, load_tenant, tenant_lines

    with failing_cleanly(), ExitStack() as stack:
        settings = data_dir_settings(data_dir)
        store = stack.enter_context(store_of(settings))
        key = existing_master_key(settings)
        if fmt == "sqlite":
            if out is None:
                fail("--format sqlite needs --out FILE")
            written = export_sqlite(store, key, database, tenant, out)
            click.echo(
                f"exported tenant {tenant!r} to {out}: {written.facts} facts, "
                f"{written.rules} rules, {written.scopes} scopes, {written.events} events",
                err=True,
            )
            return
        state = load_tenant(store, key, database, tenant)
        if out is None:
            stream = sys.stdout.buffer
            for line in tenant_lines(state):
                stream.write(line)
            stream.flush()
            return
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            count = 0
            for line in tenant_lines(state):
                handle.write(line)
                count += 1
        click.echo(f"exported {count} lines of tenant {tenant!r} to {out}", err=True)


@click.command("rotate-master-key")
@click.option(
    "--new-key-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help=f"File holding the new key [{NEW_MASTER_KEY_ENV}]",
)
@data_dir_option
def rotate_master_key(new_key_file: Path | None, data_dir: Path | None) -> None:
    """Re-wrap every data key under a new master key; events are not touched (offline).

    The current key comes from NOCTURNUS_MASTER_KEY or master.key, the new one from
    NOCTURNUS_NEW_MASTER_KEY or --new-key-file (32 bytes as hex or base64). If the
    current key came from master.key, that file is replaced by the new key; otherwise
    set NOCTURNUS_MASTER_KEY to the new key before the next start. Interrupted? Run
    it again with the same new key: finished files are skipped.
    """
    from nocturnus.service.datadir import (
        existing_master_key,
        lock_data_dir,
        require_data_dir,
        store_of,
    )
    from nocturnus.service.maintenance import rotate_master_key as rotate
    from nocturnus.service.maintenance import write_key_file
    from nocturnus.store.crypto import parse_master_key

    with failing_cleanly(), ExitStack() as stack:
        settings = data_dir_settings(data_dir)
        store = stack.enter_context(store_of(settings))
        require_data_dir(store)
        if new_key_file is not None:
            text, source = new_key_file.read_text(), f"new key file {new_key_file}"
        else:
            text, source = os.environ.get(NEW_MASTER_KEY_ENV, ""), NEW_MASTER_KEY_ENV
        if not text.strip():
            raise StartupError(
                f"give the new master key in {NEW_MASTER_KEY_ENV} or --new-key-file"
            )
        new_key = parse_master_key(text, source)
        old_key = existing_master_key(settings)
        with lock_data_dir(settings.data_dir, "rotate-master-key"):
            with progress_bar("re-wrapping data keys") as progress:
                done = rotate(store, old_key, new_key, progress)
            from_file = not (settings.master_key and settings.master_key.strip())
            if from_file:
                path = write_key_file(settings.data_dir, text)
        rewrapped = sum(r.rewrapped for r in done)
        skipped = sum(r.already for r in done)
        click.echo(
            f"re-wrapped {rewrapped} data keys in {len(done) - skipped} databases"
            + (f" ({skipped} already under the new key)" if skipped else "")
        )
        if from_file:
            click.echo(f"{path} now holds the new master key")
        else:
            click.echo("set NOCTURNUS_MASTER_KEY to the new key before the next start")


@click.command()
@click.option("--list", "as_list", is_flag=True, help="Only list the migrations (read-only)")
@data_dir_option
def migrate(as_list: bool, data_dir: Path | None) -> None:
    """Apply pending schema migrations to every database of the store.

    A SQLite data dir is migrated when a server opens it anyway; a PostgreSQL store is
    not (other nodes may still run the old version), and a server refuses to start on
    a schema that needs a migration until this command has applied it. With --list,
    prints every migration of every database and whether it is applied.
    """
    from nocturnus.service.datadir import store_of

    with failing_cleanly(), ExitStack() as stack:
        settings = data_dir_settings(data_dir)
        store = stack.enter_context(store_of(settings))
        names = store.names()
        if not names:
            raise StartupError(f"{store.where} holds no Nocturnus database yet")
        for name in names:
            if as_list:
                for status in store.migration_status(name):
                    when = "pending" if status.applied_ts_ms is None else "applied"
                    click.echo(f"{name}: {status.version:04d}_{status.name} {when}")
                continue
            done = store.migrate(name)
            labels = ", ".join(m.label for m in done)
            click.echo(f"{name}: applied {labels}" if done else f"{name}: up to date")
