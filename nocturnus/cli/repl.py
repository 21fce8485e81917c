"""``nocturnus repl``: an interactive session of the text syntax against a server.

Each entry is a script (a line, or several while a ``{`` is open): a lone question is
answered as ``nocturnus ask`` prints it (a table of bindings), anything else runs on
``POST /execute`` and prints each statement's message. Lines starting with ``\\`` are
the session's own commands (``\\help``). A refused statement prints one error line and
the session goes on. Entries are kept in a history file in the config dir (0600, the
last :data:`HISTORY_SIZE`), which line editing (readline) offers again at a terminal.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

import click

from nocturnus.cli.client import Client
from nocturnus.cli.connection import Remote, client_command
from nocturnus.cli.knowledge import answer_text, run_script
from nocturnus.cli.output import print_json, table
from nocturnus.cli.profile import history_path
from nocturnus.engine import syntax
from nocturnus.errors import NocturnusError

HISTORY_SIZE = 1000
HELP = """Statements of the text syntax, e.g.
  parent(alice, bob).                         a fact
  grandparent(?x, ?z) :- parent(?x, ?y), parent(?y, ?z).
  ?- grandparent(?who, charlie).              a question
  RETRACT parent(alice, bob);                 and the rest of README "Text syntax"
Session commands:
  \\use DATABASE [TENANT]   switch database (and tenant)
  \\dbs                     list databases
  \\context [N]             the context window (N facts, default 25)
  \\json                    JSON answers on/off
  \\help                    this text
  \\quit                    leave (or end of input, Ctrl-D)"""


class History:
    """The entries of this and earlier sessions, saved on exit.

    The file is read and written here (so a session without a terminal keeps its
    history too); readline, when there is a terminal, only offers the entries again.
    """

    def __init__(self, path: Path, interactive: bool) -> None:
        self.path = path
        try:
            self.entries = path.read_text().splitlines()[-HISTORY_SIZE:]
        except FileNotFoundError:
            self.entries = []
        self._readline: Any = None
        if interactive:
            try:
                import readline
            except ImportError:  # no line editing on this platform; history still kept
                return
            readline.set_auto_history(False)
            readline.clear_history()
            for entry in self.entries:
                readline.add_history(entry)
            self._readline = readline

    def add(self, entry: str) -> None:
        line = " ".join(entry.split())
        self.entries.append(line)
        if self._readline is not None:
            self._readline.add_history(line)

    def save(self) -> None:
        scratch = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.writelines(e + "\n" for e in self.entries[-HISTORY_SIZE:])
        os.replace(scratch, self.path)


def open_braces(text: str) -> int:
    """How many ``{`` are still open in ``text`` (outside quoted strings)."""
    depth, quote, escaped = 0, "", False
    for char in text:
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
    return depth


@dataclasses.dataclass(slots=True)
class Session:
    """The server and the output a session currently uses."""

    client: Client
    as_json: bool

    @property
    def prompt(self) -> str:
        return f"{self.client.database}/{self.client.tenant}> "

    def run(self, entry: str) -> bool:
        """Run one entry; False when it ends the session."""
        if entry.startswith("\\"):
            return self.command(entry[1:].split())
        try:
            statements = syntax.parse(entry)
        except syntax.ParseError as e:
            click.echo(f"error: {e}")
            return True
        if len(statements) == 1 and isinstance(statements[0], syntax.Ask):
            question = statements[0]
            if not question.explain:
                body = question.body()
                self._show(self.client.call("POST", "/ask", body),
                           lambda a: answer_text(a, body["withProof"]))
                return True
        run_script(self.client, entry, self.as_json)
        return True

    def _show(self, answer: Any, text: Any) -> None:
        if self.as_json:
            print_json(answer)
        else:
            click.echo(text(answer))

    def command(self, words: list[str]) -> bool:
        name, args = (words[0], words[1:]) if words else ("help", [])
        if name in ("q", "quit", "exit"):
            return False
        if name in ("h", "help", "?"):
            click.echo(HELP)
        elif name == "use" and 1 <= len(args) <= 2:
            tenant = args[1] if len(args) == 2 else self.client.tenant
            self.client = dataclasses.replace(self.client, database=args[0], tenant=tenant)
            click.echo(f"using database {args[0]}, tenant {tenant}")
        elif name == "json" and not args:
            self.as_json = not self.as_json
            click.echo(f"JSON answers {'on' if self.as_json else 'off'}")
        elif name == "dbs" and not args:
            listed = self.client.call("GET", "/databases")["databases"]
            self._show(listed, lambda ds: table(
                ["database", "tenants", "events"],
                [[d["name"], d["tenants"], d["events"]] for d in ds],
            ))
        elif name == "context" and len(args) <= 1 and all(a.isdigit() for a in args):
            body = {"maxFacts": int(args[0]) if args else 25}
            window = self.client.call("POST", "/context/optimize", body)
            self._show(window, lambda w: w["formattedText"] or "(empty)")
        else:
            click.echo(f"error: unknown command \\{' '.join(words)} (\\help lists them)")
        return True


def read_entry(interactive: bool, prompt: str) -> str:
    """One entry: a line, and the next ones while a ``{`` is open.

    :raises EOFError: the input ended before an entry started.
    """
    lines = [input(prompt if interactive else "")]
    while open_braces("\n".join(lines)) > 0:
        try:
            lines.append(input("... " if interactive else ""))
        except EOFError:
            break
    return "\n".join(lines)


@click.command()
@client_command
def repl(remote: Remote) -> None:
    """An interactive session: type the text syntax, \\help for the session's commands.

    Questions answer as tables; with --json every answer is JSON. Reads entries from
    standard input when it is not a terminal (one per line, or several lines while a
    { is open), so a script can drive it. History: $XDG_CONFIG_HOME/nocturnus/history.
    """
    interactive = sys.stdin.isatty()
    history = History(history_path(), interactive)
    session = Session(remote.client, remote.as_json)
    if interactive:
        click.echo(f"Nocturnus at {remote.client.url}. \\help for help, \\quit to leave.")
    try:
        while True:
            try:
                entry = read_entry(interactive, session.prompt)
            except EOFError:
                break
            except KeyboardInterrupt:
                click.echo()
                continue
            if not entry.strip():
                continue
            history.add(entry)
            try:
                if not session.run(entry):
                    break
            except NocturnusError as e:  # the server refused: say so, go on
                click.echo(f"error: {e}")
    finally:
        history.save()
    if interactive:
        click.echo()
