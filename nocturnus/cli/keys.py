"""``nocturnus keys``: API keys on a data dir whose server is stopped (issue 7)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import click

from nocturnus.cli.options import data_dir_option, data_dir_settings
from nocturnus.cli.output import fail
from nocturnus.errors import NocturnusError, ValidationError


@click.group()
def keys() -> None:
    """Manage API keys on a data dir whose server is stopped.

    While the server runs, use `nocturnus auth keys|create-key|revoke-key` (over HTTP,
    with an admin key) instead: these commands refuse to touch a data dir that a
    server holds.
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
@data_dir_option
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
        record, key = asyncio.run(offline.create_key(data_dir_settings(data_dir), spec))
    except (NocturnusError, OSError) as e:
        fail(e)
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
@data_dir_option
def keys_list(as_json: bool, data_dir: Path | None) -> None:
    """List the live keys (never a hash or a key)."""
    from nocturnus.service import offline
    from nocturnus.service.apikeys import key_info

    try:
        records = asyncio.run(offline.list_keys(data_dir_settings(data_dir)))
    except (NocturnusError, OSError) as e:
        fail(e)
    if as_json:
        click.echo(json.dumps([key_info(r) for r in records], indent=2))
        return
    for r in records:
        databases = ",".join(r.databases) or "*"
        tenants = ",".join(r.tenants) or "*"
        scope = f"databases={databases} tenants={tenants}"
        state = "enabled" if r.enabled else "disabled"
        click.echo(f"{r.id}  {r.prefix}  {r.role:<6}  {state:<8}  {scope}  {r.name}")


@keys.command("revoke")
@click.argument("key_id")
@data_dir_option
def keys_revoke(key_id: str, data_dir: Path | None) -> None:
    """Revoke the key KEY_ID (its id, as listed)."""
    from nocturnus.service import offline

    try:
        record = asyncio.run(offline.revoke_key(data_dir_settings(data_dir), key_id))
    except (NocturnusError, OSError) as e:
        fail(e)
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
