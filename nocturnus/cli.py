"""The ``nocturnus`` command: a thin click layer over service and store functions.

Every command prints one clear line and exits non-zero on failure, never a traceback for
an error a user can cause (bad flag, wrong key, unreadable data dir).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

import click

from nocturnus.errors import NocturnusError, ValidationError
from nocturnus.logs import configure_logging
from nocturnus.settings import load_settings


def _fail(error: Exception) -> None:
    click.echo(f"nocturnus: error: {error}", err=True)
    sys.exit(1)


@click.group()
@click.version_option(package_name="nocturnus")
def main() -> None:
    """Nocturnus: an event-sourced, multi-tenant logic server for AI agents."""


@main.command()
@click.option("--host", default=None, help="Address to listen on [NOCTURNUS_HOST, 127.0.0.1]")
@click.option("--port", default=None, type=int, help="TCP port [NOCTURNUS_PORT, 9300]")
@click.option(
    "--data-dir",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="Data directory [NOCTURNUS_DATA_DIR, ./data]",
)
def serve(host: str | None, port: int | None, data_dir: Path | None) -> None:
    """Start the HTTP server (REST, MCP, admin) until SIGINT or SIGTERM."""
    from nocturnus.api.app import create_app
    from nocturnus.store.dirlock import DataDirLock

    try:
        settings = load_settings({"host": host, "port": port, "data_dir": data_dir})
        configure_logging(settings.log_format, settings.log_level)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        app = create_app(settings)
        # held while serving: offline commands (keys) refuse to run beside a server
        lock = DataDirLock(settings.data_dir).acquire("server")
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
@click.option("--role", required=True, type=click.Choice(["admin", "writer", "reader"]), help="Role of the new key")
@click.option("--name", default=None, help="A name shown in listings [the key's prefix]")
@click.option("--description", default="", help="Free text shown in listings")
@click.option("--database", "databases", multiple=True, help="Limit the key to this database (repeatable)")
@click.option("--tenant", "tenants", multiple=True, help="Limit the key to this tenant (repeatable)")
@click.option("--expires-in-days", type=click.IntRange(1, 36_500), default=None, help="Lifetime in days [none]")
@click.option("--quiet", is_flag=True, help="Print only the key (for scripts)")
@DATA_DIR_OPTION
def keys_create(
    role: str, name: str | None, description: str, databases: tuple[str, ...],
    tenants: tuple[str, ...], expires_in_days: int | None, quiet: bool, data_dir: Path | None,
) -> None:
    """Create an API key and print it once (only its argon2id hash is stored)."""
    from nocturnus.service import offline
    from nocturnus.service.apikeys import NewKey

    spec = NewKey(role, databases, tenants, description, name, expires_in_days)
    try:
        _check_names(databases, tenants)
        record, key = asyncio.run(offline.create_key(load_settings({"data_dir": data_dir}), spec))
    except (NocturnusError, OSError) as e:
        _fail(e)
        return
    if quiet:
        click.echo(key)
        return
    click.echo(f"Created {record.role} key {record.id} ({record.name}); it is shown only once:")
    click.echo(key)


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array instead of a table")
@DATA_DIR_OPTION
def keys_list(as_json: bool, data_dir: Path | None) -> None:
    """List the live keys (never a hash or a key)."""
    from nocturnus.service import offline

    try:
        records = asyncio.run(offline.list_keys(load_settings({"data_dir": data_dir})))
    except (NocturnusError, OSError) as e:
        _fail(e)
        return
    if as_json:
        click.echo(json.dumps([_key_row(r) for r in records], indent=2))
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
        record = asyncio.run(offline.revoke_key(load_settings({"data_dir": data_dir}), key_id))
    except (NocturnusError, OSError) as e:
        _fail(e)
        return
    click.echo(f"Revoked key {record.id} ({record.name})")


def _check_names(databases: tuple[str, ...], tenants: tuple[str, ...]) -> None:
    from nocturnus.api.schema import DATABASE_NAME, TENANT_NAME

    for value in databases:
        if not re.fullmatch(DATABASE_NAME, value):
            raise ValidationError(f"--database: {value!r} does not match {DATABASE_NAME}")
    for value in tenants:
        if not re.fullmatch(TENANT_NAME, value):
            raise ValidationError(f"--tenant: {value!r} does not match {TENANT_NAME}")


def _key_row(record: Any) -> dict[str, Any]:
    return {
        "id": record.id, "name": record.name, "prefix": record.prefix, "role": record.role,
        "databases": list(record.databases), "tenants": list(record.tenants),
        "description": record.description, "createdAt": record.created_at,
        "expiresAt": record.expires_at, "enabled": record.enabled,
    }


def _quiet_sanic() -> None:
    for name in ("sanic.root", "sanic.server", "sanic.access"):
        logging.getLogger(name).setLevel(logging.WARNING)


def run(args: list[str] | None = None) -> Any:
    """Entry point for tests: run the CLI in-process without exiting."""
    return main.main(args=args, standalone_mode=False)
