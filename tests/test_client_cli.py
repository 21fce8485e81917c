"""The client CLI (issue 18, deliverable 6): ``nocturnus`` as a real subprocess against a
real server on a real socket; the REPL driven through stdin."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from nocturnus.cli.knowledge import chunks
from nocturnus.engine import syntax
from tests.conftest import ADMIN_KEY
from tests.server import Server, free_port

CLIENT_ENV = ("NOCTURNUS_URL", "NOCTURNUS_API_KEY", "NOCTURNUS_DATABASE", "NOCTURNUS_TENANT")


class Cli:
    """``python -m nocturnus`` with a config dir of its own and the given environment."""

    def __init__(self, config: Path, **env: str) -> None:
        base = {k: v for k, v in os.environ.items()
                if k not in CLIENT_ENV and not k.startswith("NOCTURNUSAI_")}
        self.env = {**base, "XDG_CONFIG_HOME": str(config), **env}
        self.config = config / "nocturnus"

    def run(self, *args: str, stdin: str = "", ok: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "nocturnus", *args], check=False, input=stdin, capture_output=True,
            text=True, env={**self.env, **env}, timeout=120,
        )
        if ok:
            assert done.returncode == 0, done.stderr + done.stdout
        return done

    def json(self, *args: str, **env: str) -> Any:
        return json.loads(self.run(*args, "--json", **env).stdout)


@pytest.fixture
def cli(server: Server, tmp_path: Path, tenant: str) -> Cli:
    return Cli(tmp_path / "config", NOCTURNUS_URL=server.url, NOCTURNUS_TENANT=tenant)


def test_tell_teach_ask_forget(cli: Cli) -> None:
    told = cli.run("tell", "parent(alice, bob)", "parent(bob, charlie).")
    assert told.stdout == "Stored: parent(alice, bob)\nStored: parent(bob, charlie)\n"
    cli.run("teach", "grandparent(?x, ?z) :- parent(?x, ?y), parent(?y, ?z)")

    asked = cli.run("ask", "grandparent(?x, charlie)").stdout
    assert asked.splitlines() == ["x", "-----", "alice", "(1 answer)"]
    assert cli.run("ask", "grandparent(alice, charlie)").stdout == "yes\n"
    assert cli.run("ask", "grandparent(charlie, ?who)").stdout == "no\n"
    proof = cli.run("ask", "--proof", "grandparent(?x, charlie)").stdout.splitlines()
    assert proof == [
        "grandparent(alice, charlie)  [by rule grandparent(?x, ?z) :- parent(?x, ?y), parent(?y, ?z)]",
        "  parent(alice, bob)  [fact]",
        "  parent(bob, charlie)  [fact]",
    ]
    answer = cli.json("ask", "grandparent(?x, ?y)")
    assert answer["bindings"] == [{"x": "alice", "y": "charlie"}] and answer["count"] == 1

    assert cli.run("forget", "parent(alice, bob)").stdout == "Forgotten: parent(alice, bob)\n"
    assert cli.run("ask", "grandparent(?x, ?y)").stdout == "no\n"


def test_bad_input_is_one_line_and_status_1(cli: Cli, tmp_path: Path) -> None:
    cases = [
        (("ask", "grandparent(?x, charlie"), "nocturnus: error: goal: line 1, column 24: "),
        (("tell", "a(?x) :- b(?x)"), "nocturnus: error: argument 1: 'a(?x) :- b(?x)' is not a fact"),
        (("teach", "a(x)"), "nocturnus: error: argument 1: 'a(x)' is not a rule"),
        (("tell", "alive(rex)", "NOT alive(rex)"), "nocturnus: error: 409 CONFLICT: "),
        (("ask", "p(?x)", "--url", f"http://127.0.0.1:{free_port()}"),
         "nocturnus: error: cannot reach the server at http://127.0.0.1:"),
        (("import", str(tmp_path / "missing.nql")), "nocturnus: error: [Errno 2] No such file"),
    ]
    for args, start in cases:
        done = cli.run(*args, ok=False)
        assert done.returncode == 1, args
        assert done.stderr.startswith(start) and done.stderr.count("\n") == 1, (args, done.stderr)
        assert "Traceback" not in done.stderr


def test_context(cli: Cli) -> None:
    cli.run("tell", "likes(alice, tea)", "likes(bob, jazz)", "age(alice, 41)")
    text = cli.run("context", "--max-facts", "2", "--goal", "likes(alice, ?what)").stdout
    lines = text.splitlines()
    assert lines[0] == "likes(alice, tea)" and lines[-1].startswith("% 2 of 3 facts, ~")
    window = cli.json("context", "--format", "natural")
    assert window["totalFactsIncluded"] == 3 and "Alice likes tea." in window["formattedText"]


SCRIPT = """\
% a tenant with every kind of knowledge
parent(alice, bob).
parent(bob, "charlie brown").
price(widget, 9.5).
code(widget, "500").
NOT paid(o7).
plan(acme, pro) @what-if {"confidence": 0.75, "metadata": {"src": "crm"}}.
grandparent(?x, ?z) :- parent(?x, ?y), parent(?y, ?z).
leaf(?x) :- parent(?y, ?x), not parent(?x, "charlie brown").
safe(?x) :- plan(?x, ?p) @what-if {"confidence": 0.5}.
RESTRICT { employee(?x) AND contractor(?x) };
?- grandparent(?who, "charlie brown").
"""


def test_import_then_export_text_round_trips(cli: Cli, tmp_path: Path) -> None:
    source = tmp_path / "kb.nql"
    source.write_text(SCRIPT)
    imported = cli.run("import", str(source)).stdout.splitlines()
    assert imported == [
        "Inferred 1 result(s):",
        '  grandparent(alice, "charlie brown")',
        f"ran 11 statements from {source}: 1 ask, 1 restrict, 3 teach, 6 tell",
    ]
    exported = cli.run("export-text").stdout
    lines = exported.splitlines()
    assert lines[0].startswith(f"% nocturnus export-text: database default, tenant {cli.env['NOCTURNUS_TENANT']}, ")
    assert lines[1:] == [
        'code(widget, "500").',
        "NOT paid(o7).",
        'parent(alice, bob).',
        'parent(bob, "charlie brown").',
        'plan(acme, pro) @what-if {"confidence": 0.75, "metadata": {"src": "crm"}}.',
        "price(widget, 9.5).",
        "grandparent(?x, ?z) :- parent(?x, ?y), parent(?y, ?z).",
        'leaf(?x) :- parent(?y, ?x), NAF parent(?x, "charlie brown").',
        'safe(?x) :- plan(?x, ?p) @what-if {"confidence": 0.5}.',
        "RESTRICT { employee(?x) AND contractor(?x) }.",
    ]
    # into another tenant, from stdin: the same knowledge comes back out
    other = f"t_{uuid.uuid4().hex[:12]}"
    cli.run("import", "-", stdin=exported, NOCTURNUS_TENANT=other)
    again = cli.run("export-text", NOCTURNUS_TENANT=other).stdout.splitlines()
    assert again[1:] == lines[1:]
    leaves = cli.run("ask", "leaf(?who)", NOCTURNUS_TENANT=other).stdout.splitlines()
    assert leaves[2:] == ["charlie brown", "(1 answer)"]

    out = tmp_path / "kb-export.nql"
    cli.run("export-text", "--out", str(out))
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert out.read_text().splitlines()[1:] == lines[1:]
    refused = cli.run("export-text", "--out", str(out), ok=False)
    assert refused.returncode == 1 and "never overwrites" in refused.stderr


def test_an_import_error_names_the_file_line_and_runs_nothing(cli: Cli, tmp_path: Path) -> None:
    source = tmp_path / "broken.nql"
    source.write_text("ok(1).\nok(2).\nbroken(.\n")
    done = cli.run("import", str(source), ok=False)
    assert done.returncode == 1
    assert done.stderr.startswith(f"nocturnus: error: {source}: line 3, column 8: ")
    assert cli.run("ask", "ok(?n)").stdout == "no\n"


def test_big_files_run_in_scripts_of_at_most_the_limit() -> None:
    text = "a(1).\n% note\nb(2). c(3).\nRESTRICT {\n x(?v) };\nd(4).\n"
    statements = syntax.parse(text)
    pieces = chunks(text, statements, 2)
    assert pieces == [(1, "a(1).\n% note\nb(2). "), (3, "c(3).\nRESTRICT {\n x(?v) };\n"), (6, "d(4).\n")]
    assert [len(syntax.parse(p)) for _, p in pieces] == [2, 2, 1]
    assert chunks(text, statements, 10) == [(1, text)]


def test_dbs(cli: Cli) -> None:
    name = f"cli_{uuid.uuid4().hex[:8]}"
    assert cli.run("dbs", "create", name).stdout == f"Created database {name}\n"
    assert cli.run("dbs", "create", name).stdout == f"Exists already: database {name}\n"
    table = cli.run("dbs").stdout.splitlines()
    assert table[0].split() == ["database", "tenants", "events", "created"]
    assert name in [row.split()[0] for row in table[2:]]
    cli.run("tell", "p(a)", "--database", name)
    tenants = cli.json("dbs", "tenants", "-d", name)
    assert [(t["name"], t["facts"]) for t in tenants] == [(cli.env["NOCTURNUS_TENANT"], 1)]


def test_login_saves_url_and_key_0600_and_commands_use_them(auth_server: Server, tmp_path: Path) -> None:
    cli = Cli(tmp_path / "config")
    refused = cli.run("login", "--url", auth_server.url, ok=False)
    assert refused.returncode == 1 and "needs a key" in refused.stderr
    wrong = cli.run("login", "--url", auth_server.url, "--key", "not-a-key-0123456789", ok=False)
    assert "401 UNAUTHORIZED" in wrong.stderr and not (cli.config / "login.json").exists()

    done = cli.run("login", "--url", auth_server.url, "--key", ADMIN_KEY, "-t", "acme_login")
    assert done.stdout.startswith(f"Logged in to {auth_server.url} as NOCTURNUS_ADMIN_KEY (admin)")
    saved = cli.config / "login.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert stat.S_IMODE(cli.config.stat().st_mode) == 0o700
    assert json.loads(saved.read_text()) == {
        "url": auth_server.url, "key": ADMIN_KEY, "database": None, "tenant": "acme_login",
    }

    cli.run("tell", "saved(login)")  # URL, key and tenant from the login
    assert auth_server.request("POST", "/ask", tenant="acme_login", json={"predicate": "saved", "args": ["?x"]},
                               headers={"X-API-Key": ADMIN_KEY}).json()["count"] == 1
    assert cli.json("auth", "whoami")["role"] == "admin"
    # flags and environment win over the login; the saved key never goes to another URL
    assert cli.run("ask", "saved(?x)", "-t", "elsewhere").stdout == "no\n"
    assert cli.run("ask", "saved(?x)", NOCTURNUS_TENANT="elsewhere").stdout == "no\n"
    other = cli.run("ask", "saved(?x)", "--url", auth_server.url + "/", ok=False)
    assert other.returncode == 0  # the same server, written with a trailing slash
    elsewhere = f"http://localhost:{auth_server.port}"
    anonymous = cli.run("ask", "saved(?x)", "--url", elsewhere, ok=False)
    assert "401 UNAUTHORIZED" in anonymous.stderr

    assert cli.run("logout").stdout == "Logged out\n" and not saved.exists()
    assert cli.run("logout").stdout == "No saved login\n"


def test_auth_commands_manage_keys_over_http(auth_server: Server, tmp_path: Path) -> None:
    cli = Cli(tmp_path / "config", NOCTURNUS_URL=auth_server.url, NOCTURNUS_API_KEY=ADMIN_KEY)
    assert cli.run("auth", "status").stdout == "authentication on, " + \
        f"{cli.json('auth', 'status')['keyCount']} keys\n"
    made = cli.json("auth", "create-key", "--role", "reader", "--name", "cli-reader",
                    "--for-tenant", "acme")
    assert (made["role"], made["tenants"], made["name"]) == ("reader", ["acme"], "cli-reader")
    listed = cli.run("auth", "keys").stdout
    assert made["id"] in listed and "cli-reader" in listed and made["key"] not in listed
    reader = cli.json("auth", "whoami", NOCTURNUS_API_KEY=made["key"])
    assert (reader["name"], reader["tenants"]) == ("cli-reader", ["acme"])
    denied = cli.run("tell", "p(a)", "-t", "acme", NOCTURNUS_API_KEY=made["key"], ok=False)
    assert "403 FORBIDDEN" in denied.stderr
    assert cli.run("auth", "revoke-key", made["id"]).stdout == f"Revoked key {made['id']}\n"
    gone = cli.run("auth", "whoami", NOCTURNUS_API_KEY=made["key"], ok=False)
    assert "401 UNAUTHORIZED" in gone.stderr


def test_auth_bootstrap_saves_the_first_key(tmp_path: Path) -> None:
    password = "cli-bootstrap-password-01"
    server = Server(tmp_path / "data", env={
        "NOCTURNUS_AUTH": "on", "NOCTURNUS_BOOTSTRAP_PASSWORD": password,
    }).start()
    try:
        cli = Cli(tmp_path / "config", NOCTURNUS_URL=server.url)
        assert "no key yet" in cli.run("auth", "status").stdout
        done = cli.run("auth", "bootstrap", "--save", NOCTURNUS_BOOTSTRAP_PASSWORD=password)
        key = done.stdout.splitlines()[1]
        assert key.startswith("nct_")
        assert json.loads((cli.config / "login.json").read_text())["key"] == key
        assert cli.json("auth", "whoami")["role"] == "admin"  # the saved key
        again = cli.run("auth", "bootstrap", "--password", password, ok=False)
        assert "403 FORBIDDEN" in again.stderr
    finally:
        server.stop()


def test_repl_through_stdin(cli: Cli) -> None:
    entries = [
        "parent(a, b).",
        "parent(b, c). gp(?x, ?z) :- parent(?x, ?y), parent(?y, ?z).",
        "?- gp(?who, c).",
        "bad(",
        "tell(o) :- nope(",
        "alive(rex). NOT alive(rex).",
        "TEST \"family\" {",
        "  GIVEN { p(a). }",
        "  EXPECT { PROVABLE p(a); }",
        "}",
        "\\json",
        "?- gp(a, ?z).",
        "\\json",
        "\\use default other_tenant",
        "?- gp(?x, ?y).",
        "\\nope",
        "\\quit",
        "never(run).",
    ]
    session = "".join(e + "\n" for e in entries)
    out = cli.run("repl", stdin=session).stdout
    blocks = out.split("\n{")
    assert blocks[0].splitlines() == [
        "Stored: parent(a, b)",
        "Stored: parent(b, c)",
        "Rule stored: gp(?x, ?z) :- parent(?x, ?y), parent(?y, ?z)",
        "who", "---", "a", "(1 answer)",
        "error: line 1, column 5: expected a variable, a name, a number or a quoted string, found the end of the script",
        "error: line 1, column 17: expected a variable, a name, a number or a quoted string, found the end of the script",
        "Stored: alive(rex)",
        f"error: 409 CONFLICT: {out.split('409 CONFLICT: ')[1].splitlines()[0]}",
        "PASS family (1 expectation(s))",
        "JSON answers on",
    ]
    answer, rest = ("{" + blocks[1]).split("\n}\n")
    assert json.loads(answer + "}")["bindings"] == [{"z": "c"}]
    assert rest.splitlines() == [
        "JSON answers off",
        "using database default, tenant other_tenant",
        "no",
        "error: unknown command \\nope (\\help lists them)",
    ]
    history = cli.config / "history"
    assert stat.S_IMODE(history.stat().st_mode) == 0o600
    entries = history.read_text().splitlines()
    assert entries[0] == "parent(a, b)." and entries[-1] == "\\quit"
    assert 'TEST "family" { GIVEN { p(a). } EXPECT { PROVABLE p(a); } }' in entries
    # a second session adds to the same history
    cli.run("repl", stdin="\\help\n")
    assert history.read_text().splitlines() == [*entries, "\\help"]


@pytest.mark.parametrize(
    ("command", "mentions"),
    [
        (["export"], "nocturnus export-text"),
        (["export-text"], "nocturnus export"),
        (["import"], "nocturnus export-text"),
        (["keys"], "nocturnus auth"),
        (["auth"], "nocturnus keys"),
    ],
)
def test_help_explains_the_offline_and_client_twins(tmp_path: Path, command: list[str], mentions: str) -> None:
    text = Cli(tmp_path).run(*command, "--help").stdout
    assert mentions in " ".join(text.split())
