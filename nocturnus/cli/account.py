"""Client commands about the server itself: login/logout, databases and API keys.

``nocturnus auth …`` manages keys over HTTP on a running server; ``nocturnus keys …``
is the offline twin working on a stopped server's data dir.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from nocturnus.cli.client import DEFAULT_URL, Client
from nocturnus.cli.connection import Remote, client_command
from nocturnus.cli.output import fail, failing_cleanly, print_json, table
from nocturnus.cli.profile import Login, forget_login, load_login, save_login

# -- login ----------------------------------------------------------------------------


@click.command()
@click.option("--url", default=None, help=f"Server URL [the saved one, {DEFAULT_URL}]")
@click.option(
    "--key",
    default=None,
    envvar="NOCTURNUS_API_KEY",
    help="API key [NOCTURNUS_API_KEY; asked for, hidden, when the server needs one]",
)
@click.option("--database", "-d", default=None, help="Database to use [default]")
@click.option("--tenant", "-t", default=None, help="Tenant to use [default]")
def login(url: str | None, key: str | None, database: str | None, tenant: str | None) -> None:
    """Check a server and a key, and save them for the client commands.

    Saved in $XDG_CONFIG_HOME/nocturnus/login.json (~/.config/nocturnus without it),
    mode 0600. The key is checked with GET /auth/whoami before it is saved.
    """
    with failing_cleanly():
        saved = load_login()
        url = url or (saved.url if saved else DEFAULT_URL)
        probe = Client(url)
        status = probe.call("GET", "/auth/status")
        if status.get("authEnabled") and not key:
            if not sys.stdin.isatty():
                fail("this server needs a key: give --key or NOCTURNUS_API_KEY")
            key = click.prompt("API key", hide_input=True)
        client = Client(url, key or None)
        whoami = client.call("GET", "/auth/whoami")
        path = save_login(Login(url, key or None, database, tenant))
    who = f"as {whoami['name']} ({whoami['role']})" if status.get("authEnabled") else (
        "(authentication is off)"
    )
    click.echo(f"Logged in to {url} {who}; saved to {path}")


@click.command()
def logout() -> None:
    """Forget the saved login (server URL and key)."""
    with failing_cleanly():
        removed = forget_login()
    click.echo("Logged out" if removed else "No saved login")


# -- databases ----------------------------------------------------------------------------


@click.group(invoke_without_command=True)
@client_command
@click.pass_context
def dbs(ctx: click.Context, remote: Remote) -> None:
    """List the databases this key may see (subcommands: create, tenants)."""
    if ctx.invoked_subcommand is not None:
        return
    listed = remote.client.call("GET", "/databases")["databases"]
    if remote.as_json:
        print_json(listed)
        return
    rows = [[d["name"], d["tenants"], d["events"], _when(d["createdAt"])] for d in listed]
    click.echo(table(["database", "tenants", "events", "created"], rows))


def _when(epoch_ms: int | None) -> str | None:
    if epoch_ms is None:
        return None
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch_ms / 1000))


@dbs.command("create")
@click.argument("name")
@client_command
def dbs_create(remote: Remote, name: str) -> None:
    """Create database NAME (nothing happens when it exists)."""
    answer = remote.client.call("POST", "/databases", {"name": name})
    if remote.as_json:
        print_json(answer)
        return
    click.echo(f"{'Created' if answer['created'] else 'Exists already:'} database {name}")


@dbs.command("tenants")
@client_command
def dbs_tenants(remote: Remote) -> None:
    """List the tenants of the database (--database)."""
    client = remote.client
    listed = client.call("GET", f"/admin/databases/{client.database}/tenants")["tenants"]
    if remote.as_json:
        print_json(listed)
        return
    rows = [[t["name"], t["facts"], t["rules"], _when(t["createdAt"])] for t in listed]
    click.echo(table(["tenant", "facts", "rules", "created"], rows))


# -- keys over HTTP ------------------------------------------------------------------------


@click.group()
def auth() -> None:
    """API keys on a running server, over HTTP (needs an admin key).

    `nocturnus keys …` is the offline twin for a stopped server's data dir.
    """


@auth.command("status")
@client_command
def auth_status(remote: Remote) -> None:
    """Whether the server asks for keys, and whether a first key is still to be made."""
    status = remote.client.call("GET", "/auth/status")
    if remote.as_json:
        print_json(status)
        return
    click.echo(
        f"authentication {status['mode']}, {status['keyCount']} keys"
        + (", no key yet: bootstrap one" if status["bootstrapRequired"] else "")
    )


@auth.command("whoami")
@client_command
def auth_whoami(remote: Remote) -> None:
    """The key in use: name, role, scope and permissions."""
    me = remote.client.call("GET", "/auth/whoami")
    if remote.as_json:
        print_json(me)
        return
    scope = _scope(me["databases"], me["tenants"])
    click.echo(f"{me['name']} ({me['role']}), {scope}")
    click.echo("permissions: " + ", ".join(me["permissions"]))


def _scope(databases: list[str], tenants: list[str]) -> str:
    return f"databases {','.join(databases) or '*'}, tenants {','.join(tenants) or '*'}"


@auth.command("keys")
@client_command
def auth_keys(remote: Remote) -> None:
    """List the keys (never a hash or a key)."""
    keys = remote.client.call("GET", "/auth/keys")
    if remote.as_json:
        print_json(keys)
        return
    rows = [
        [k["id"], k["name"], k["prefix"], k["role"],
         "enabled" if k["enabled"] else "disabled", _scope(k["databases"], k["tenants"]),
         _when(k["expiresAt"])]
        for k in keys
    ]
    click.echo(table(["id", "name", "prefix", "role", "state", "scope", "expires"], rows))


@auth.command("create-key")
@click.option(
    "--role", required=True, type=click.Choice(["admin", "writer", "reader"]), help="Role"
)
@click.option("--name", default=None, help="Name shown in listings [the key's prefix]")
@click.option("--description", default="", help="Free text shown in listings")
@click.option("--for-database", "databases", multiple=True, help="Limit to (repeatable)")
@click.option("--for-tenant", "tenants", multiple=True, help="Limit to (repeatable)")
@click.option("--expires-in-days", type=click.IntRange(1, 36_500), default=None)
@client_command
def auth_create_key(
    remote: Remote,
    role: str,
    name: str | None,
    description: str,
    databases: tuple[str, ...],
    tenants: tuple[str, ...],
    expires_in_days: int | None,
) -> None:
    """Create a key and print it once (only its hash is stored)."""
    body: dict[str, Any] = {
        "role": role,
        "description": description,
        "databases": list(databases),
        "tenants": list(tenants),
        "name": name,
        "expiresInDays": expires_in_days,
    }
    made = remote.client.call("POST", "/auth/keys", body)
    if remote.as_json:
        print_json(made)
        return
    click.echo(f"Created {made['role']} key {made['id']} ({made['name']}); shown only once:")
    click.echo(made["key"])


@auth.command("revoke-key")
@click.argument("key_id")
@client_command
def auth_revoke_key(remote: Remote, key_id: str) -> None:
    """Revoke the key KEY_ID (effective on its next request)."""
    answer = remote.client.call("DELETE", f"/auth/keys/{key_id}")
    if remote.as_json:
        print_json(answer)
        return
    click.echo(f"Revoked key {answer['id']}")


@auth.command("bootstrap")
@click.option("--user", default="admin", show_default=True, help="NOCTURNUS_BOOTSTRAP_USER")
@click.option(
    "--password",
    envvar="NOCTURNUS_BOOTSTRAP_PASSWORD",
    default=None,
    help="NOCTURNUS_BOOTSTRAP_PASSWORD [asked for, hidden]",
)
@click.option("--name", "key_name", default="admin", show_default=True, help="Key name")
@click.option("--save", is_flag=True, help="Save the server and the new key (as login does)")
@client_command
def auth_bootstrap(
    remote: Remote, user: str, password: str | None, key_name: str, save: bool
) -> None:
    """Create the first admin key of a server that has none (POST /auth/bootstrap)."""
    if password is None:
        if not sys.stdin.isatty():
            fail("give --password or NOCTURNUS_BOOTSTRAP_PASSWORD")
        password = click.prompt("Bootstrap password", hide_input=True)
    body = {"username": user, "password": password, "keyName": key_name}
    anonymous = Client(remote.client.url, None, remote.client.database, remote.client.tenant)
    made = anonymous.call("POST", "/auth/bootstrap", body)
    if save:
        with failing_cleanly():
            save_login(Login(remote.client.url, made["key"]))
    if remote.as_json:
        print_json(made)
        return
    click.echo(f"Created admin key {made['id']} ({made['name']}); shown only once:")
    click.echo(made["key"])

