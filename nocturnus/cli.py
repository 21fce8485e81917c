"""The ``nocturnus`` command: a thin click layer over service and store functions.

Every command prints one clear line and exits non-zero on failure, never a traceback for
an error a user can cause (bad flag, wrong key, unreadable data dir, broken chain).
Operations work on the data dir directly. ``replay``, ``verify``, ``export`` and
``backup`` only read (``backup`` is the online one: run it while the server serves);
``snapshot``, ``compact``, ``restore`` and ``rotate-master-key`` write, take the data
dir's lock and refuse while a server holds it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from nocturnus.errors import NocturnusError, StartupError, ValidationError
from nocturnus.logs import configure_logging
from nocturnus.settings import Settings, load_settings

Progress = Callable[[int, int], None]
NEW_MASTER_KEY_ENV = "NOCTURNUS_NEW_MASTER_KEY"


def _fail(error: Exception | str) -> None:
    message = error if isinstance(error, str) else str(error)
    first = message.splitlines()[0] if message.strip() else repr(error)
    click.echo(f"nocturnus: error: {first}", err=True)
    sys.exit(1)


@contextmanager
def _failing_cleanly() -> Iterator[None]:
    """Turn the errors a user can cause into one line and exit status 1."""
    try:
        yield
    except (NocturnusError, OSError) as e:
        _fail(e)


@contextmanager
def _progress(label: str) -> Iterator[Progress]:
    """A click progress bar on stderr, drawn once the total is known."""
    bar: Any = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if not sys.stderr.isatty():
            return
        if bar is None:
            bar = click.progressbar(length=max(total, 1), label=label, file=sys.stderr)
            bar.__enter__()
        bar.update(max(0, min(done, total) - bar.pos))

    try:
        yield update
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)


def _data_dir_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--data-dir",
        default=None,
        type=click.Path(file_okay=False, path_type=Path),
        help="Data directory [NOCTURNUS_DATA_DIR, ./data]",
    )(fn)


def _settings(data_dir: Path | None) -> Settings:
    return load_settings({"data_dir": data_dir})


@click.group()
@click.version_option(package_name="nocturnus")
def main() -> None:
    """Nocturnus: an event-sourced, multi-tenant logic server for AI agents."""


@main.command()
@click.option(
    "--host", default=None, help="Address to listen on [NOCTURNUS_HOST, 127.0.0.1]"
)
@click.option("--port", default=None, type=int, help="TCP port [NOCTURNUS_PORT, 9300]")
@_data_dir_option
def serve(host: str | None, port: int | None, data_dir: Path | None) -> None:
    """Start the HTTP server (REST, MCP, admin) until SIGINT or SIGTERM.

    Before listening it takes the data dir's lock and opens every database once:
    a wrong master key or a changed, removed or reordered event in a log's tail
    stops it with one line naming the database and the seq.
    """
    from nocturnus.api.app import create_app
    from nocturnus.service.datadir import check_data_dir
    from nocturnus.store.dirlock import DataDirLock

    try:
        settings = load_settings({"host": host, "port": port, "data_dir": data_dir})
        configure_logging(settings.log_format, settings.log_level)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        logging.basicConfig(
            level=settings.log_level,
            format="%(asctime)s %(levelname)s %(name)s %(message)s",
        )
        app = create_app(settings)  # settings errors first, before the data dir
        # held while serving: offline commands that write refuse to run beside it
        lock = DataDirLock(settings.data_dir).acquire("serve")
        check_data_dir(settings)
    except (NocturnusError, OSError) as e:
        _fail(e)
        return
    _quiet_sanic()
    listening = (
        f"Nocturnus listening on http://{settings.host}:{settings.port} "
        f"(data dir {settings.data_dir.resolve()})"
    )
    if settings.log_format == "json":
        logging.getLogger("nocturnus").info(listening)
    else:
        click.echo(listening)
    try:
        app.run(
            host=settings.host,
            port=settings.port,
            single_process=True,
            access_log=False,
            debug=False,
        )
    except NocturnusError as e:
        _fail(e)
    finally:
        lock.release()


def _quiet_sanic() -> None:
    for name in ("sanic.root", "sanic.server", "sanic.access"):
        logging.getLogger(name).setLevel(logging.WARNING)


# -- operations -----------------------------------------------------------------------


@main.command()
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
@_data_dir_option
def replay(
    database: str, to_seq: int | None, workers: int | None, data_dir: Path | None
) -> None:
    """Rebuild a database's state from seq 0 and print a summary (read-only).

    Snapshots are not used: this is the check that the log alone rebuilds the state.
    Prints tenants, facts, rules and the seq reached, then one line per tenant. A big
    log's tenants are split over several processes (each reads, decrypts and
    rebuilds its own tenants); small logs replay in this process.
    """
    from nocturnus.service.datadir import existing_master_key
    from nocturnus.service.maintenance import replay_database

    with _failing_cleanly():
        settings = _settings(data_dir)
        key = existing_master_key(settings)
        with _progress(f"replaying {database}") as progress:
            summary = replay_database(
                settings.data_dir,
                key,
                database,
                to_seq=to_seq,
                progress=progress,
                workers=workers or os.cpu_count() or 1,
            )
        for line in summary.lines():
            click.echo(line)


@main.command()
@click.option(
    "--db", "database", default=None, help="Database to verify [every database]"
)
@_data_dir_option
def verify(database: str | None, data_dir: Path | None) -> None:
    """Check the hash chain, every GCM tag and every snapshot (read-only).

    Prints one line per database; on a problem, exits 1 naming the first bad seq.
    """
    from nocturnus.service.datadir import existing_master_key, require_data_dir
    from nocturnus.service.maintenance import log_names, verify_database

    with _failing_cleanly():
        settings = _settings(data_dir)
        require_data_dir(settings.data_dir)
        key = existing_master_key(settings)
        names = [database] if database else log_names(settings.data_dir)
        bad = []
        for name in names:
            with _progress(f"verifying {name}") as progress:
                report = verify_database(settings.data_dir, key, name, progress)
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
            _fail(f"verify failed for database {first.database!r}: {where} (see above)")


@main.command()
@click.option(
    "--db", "database", default=None, help="Database to snapshot [every database]"
)
@_data_dir_option
def snapshot(database: str | None, data_dir: Path | None) -> None:
    """Write a snapshot of every tenant now (offline: stop the server first)."""
    from nocturnus.service.datadir import (
        existing_master_key,
        lock_data_dir,
        read_registry,
        require_data_dir,
    )
    from nocturnus.service.maintenance import snapshot_database

    with _failing_cleanly():
        settings = _settings(data_dir)
        require_data_dir(settings.data_dir)
        key = existing_master_key(settings)
        with lock_data_dir(settings.data_dir, "snapshot"):
            names = (
                [database]
                if database
                else sorted(read_registry(settings.data_dir, key).databases)
            )
            for name in names:
                with _progress(f"snapshotting {name}") as progress:
                    result = snapshot_database(settings.data_dir, key, name, progress)
                click.echo(
                    f"{name}: {result.written} of {result.tenants} tenants snapshotted "
                    f"at head seq {result.head}"
                )


@main.command()
@click.option("--db", "database", required=True, help="Database to back up")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="New backup file to write",
)
@_data_dir_option
def backup(database: str, out: Path, data_dir: Path | None) -> None:
    """Copy a database consistently while the server runs (SQLite backup API).

    The file holds the events, snapshots and wrapped data keys, never the master key:
    keep the master key separately, restoring needs it.
    """
    from nocturnus.service.backup import backup_database, describe
    from nocturnus.service.datadir import existing_master_key

    with _failing_cleanly():
        settings = _settings(data_dir)
        key = existing_master_key(settings)
        info = backup_database(settings.data_dir, key, database, out)
        size = out.stat().st_size
        click.echo(f"backed up {describe(info)} to {out} ({size:,} bytes)")


@main.command()
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
@_data_dir_option
def restore(
    source: Path, database: str | None, replace: bool, data_dir: Path | None
) -> None:
    """Restore a backup into a data dir and register it (offline).

    The backup is verified in full first; it needs the master key it was written
    under (NOCTURNUS_MASTER_KEY or master.key in the data dir).
    """
    from nocturnus.service.backup import describe, restore_database
    from nocturnus.service.datadir import existing_master_key, lock_data_dir

    with _failing_cleanly():
        settings = _settings(data_dir)
        key = existing_master_key(settings)
        with (
            lock_data_dir(settings.data_dir, "restore"),
            _progress("verifying backup") as progress,
        ):
            result = restore_database(
                settings.data_dir,
                key,
                source,
                database,
                replace=replace,
                progress=progress,
            )
        verb = "replaced" if result.replaced else "restored"
        click.echo(f"{verb} {describe(result.info)} into {result.path}")


@main.command()
@click.option("--db", "database", required=True, help="Database to compact")
@_data_dir_option
def compact(database: str, data_dir: Path | None) -> None:
    """Drop deleted (crypto-shredded) tenants' rows and re-chain (offline).

    The log is verified first and left untouched if it does not verify. A
    `log_compacted` marker event records the compaction in the chain.
    """
    from nocturnus.service.datadir import existing_master_key, lock_data_dir
    from nocturnus.service.maintenance import compact_database

    with _failing_cleanly():
        settings = _settings(data_dir)
        key = existing_master_key(settings)
        with (
            lock_data_dir(settings.data_dir, "compact"),
            _progress(f"compacting {database}") as progress,
        ):
            done = compact_database(settings.data_dir, key, database, progress)
        if done is None:
            click.echo(f"{database}: nothing to compact (no deleted tenant's data)")
        else:
            click.echo(
                f"{database}: dropped {done.dropped_events} events and "
                f"{done.dropped_keys} data keys of {len(done.tenants)} deleted "
                f"tenant(s), re-chained {done.rechained} events"
            )


@main.command()
@click.option("--db", "database", required=True, help="Database of the tenant")
@click.option("--tenant", required=True, help="Tenant to export")
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl"]), default="jsonl", show_default=True
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File to write [stdout]",
)
@_data_dir_option
def export(
    database: str, tenant: str, fmt: str, out: Path | None, data_dir: Path | None
) -> None:
    """Print a tenant's decrypted facts and rules as JSON lines (read-only).

    Facts come as POST /tell bodies plus createdAt, rules as POST /teach bodies plus
    id and createdAt. The output is plaintext: treat it like the data itself.
    """
    from nocturnus.service.datadir import existing_master_key
    from nocturnus.service.export import load_tenant, tenant_lines

    with _failing_cleanly():
        settings = _settings(data_dir)
        key = existing_master_key(settings)
        state = load_tenant(settings.data_dir, key, database, tenant)
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


@main.command("rotate-master-key")
@click.option(
    "--new-key-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help=f"File holding the new key [{NEW_MASTER_KEY_ENV}]",
)
@_data_dir_option
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
    )
    from nocturnus.service.maintenance import rotate_master_key as rotate
    from nocturnus.service.maintenance import write_key_file
    from nocturnus.store.crypto import parse_master_key

    with _failing_cleanly():
        settings = _settings(data_dir)
        require_data_dir(settings.data_dir)
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
            with _progress("re-wrapping data keys") as progress:
                done = rotate(settings.data_dir, old_key, new_key, progress)
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


# -- API keys (issue 7) ----------------------------------------------------------------


DATA_DIR_OPTION = click.option(
    "--data-dir",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="Data directory [NOCTURNUS_DATA_DIR, ./data]",
)


@main.group()
def keys() -> None:
    """Manage API keys on a data dir whose server is stopped.

    While the server runs, use POST/GET/PATCH/DELETE /auth/keys instead: these commands
    refuse to touch a data dir that a server holds.
    """


@keys.command("create")
@click.option(
    "--role",
    required=True,
    type=click.Choice(["admin", "writer", "reader"]),
    help="Role of the new key",
)
@click.option(
    "--name", default=None, help="A name shown in listings [the key's prefix]"
)
@click.option("--description", default="", help="Free text shown in listings")
@click.option(
    "--database",
    "databases",
    multiple=True,
    help="Limit the key to this database (repeatable)",
)
@click.option(
    "--tenant",
    "tenants",
    multiple=True,
    help="Limit the key to this tenant (repeatable)",
)
@click.option(
    "--expires-in-days",
    type=click.IntRange(1, 36_500),
    default=None,
    help="Lifetime in days [none]",
)
@click.option("--quiet", is_flag=True, help="Print only the key (for scripts)")
@DATA_DIR_OPTION
def keys_create(
    role: str,
    name: str | None,
    description: str,
    databases: tuple[str, ...],
    tenants: tuple[str, ...],
    expires_in_days: int | None,
    quiet: bool,
    data_dir: Path | None,
) -> None:
    """Create an API key and print it once (only its argon2id hash is stored)."""
    from nocturnus.service import offline
    from nocturnus.service.apikeys import NewKey

    spec = NewKey(role, databases, tenants, description, name, expires_in_days)
    try:
        _check_names(databases, tenants)
        record, key = asyncio.run(
            offline.create_key(load_settings({"data_dir": data_dir}), spec)
        )
    except (NocturnusError, OSError) as e:
        _fail(e)
        return
    if quiet:
        click.echo(key)
        return
    click.echo(
        f"Created {record.role} key {record.id} ({record.name}); it is shown only once:"
    )
    click.echo(key)


@keys.command("list")
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON array instead of a table"
)
@DATA_DIR_OPTION
def keys_list(as_json: bool, data_dir: Path | None) -> None:
    """List the live keys (never a hash or a key)."""
    from nocturnus.service import offline
    from nocturnus.service.apikeys import key_info

    try:
        records = asyncio.run(offline.list_keys(load_settings({"data_dir": data_dir})))
    except (NocturnusError, OSError) as e:
        _fail(e)
        return
    if as_json:
        click.echo(json.dumps([key_info(r) for r in records], indent=2))
        return
    for r in records:
        scope = f"databases={','.join(r.databases) or '*'} tenants={','.join(r.tenants) or '*'}"
        state = "enabled" if r.enabled else "disabled"
        click.echo(f"{r.id}  {r.prefix}  {r.role:<6}  {state:<8}  {scope}  {r.name}")


@keys.command("revoke")
@click.argument("key_id")
@DATA_DIR_OPTION
def keys_revoke(key_id: str, data_dir: Path | None) -> None:
    """Revoke the key KEY_ID (its id, as listed)."""
    from nocturnus.service import offline

    try:
        record = asyncio.run(
            offline.revoke_key(load_settings({"data_dir": data_dir}), key_id)
        )
    except (NocturnusError, OSError) as e:
        _fail(e)
        return
    click.echo(f"Revoked key {record.id} ({record.name})")


def _check_names(databases: tuple[str, ...], tenants: tuple[str, ...]) -> None:
    from nocturnus.api.schema import DATABASE_NAME, TENANT_NAME

    for value in databases:
        if not re.fullmatch(DATABASE_NAME, value):
            raise ValidationError(
                f"--database: {value!r} does not match {DATABASE_NAME}"
            )
    for value in tenants:
        if not re.fullmatch(TENANT_NAME, value):
            raise ValidationError(f"--tenant: {value!r} does not match {TENANT_NAME}")


def run(args: list[str] | None = None) -> Any:
    """Entry point for tests: run the CLI in-process without exiting."""
    return main.main(args=args, standalone_mode=False)
