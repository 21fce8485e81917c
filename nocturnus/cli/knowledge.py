"""Client commands on a tenant's knowledge: tell, teach, forget, ask, context, and the
text syntax in and out of a server (``import``, ``export-text``).

Statements are written in the text syntax (README "Text syntax") and checked here
first, so a typo is reported with its line and column before anything is sent. Facts,
rules and retractions then run as one script on ``POST /execute``; questions go to
``POST /ask``. ``nocturnus export`` (no ``-text``) is the offline export of a data dir;
``export-text`` asks a running server.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from nocturnus.cli.client import Client, ClientError
from nocturnus.cli.connection import Remote, client_command
from nocturnus.cli.output import fail, print_json, table
from nocturnus.engine import syntax
from nocturnus.engine.syntax import text as syntax_text
from nocturnus.errors import ValidationError

MAX_STATEMENTS = 10_000
"""What ``POST /execute`` runs at most in one script; longer files go in pieces."""
FACTS_PAGE = 10_000


# -- writing: tell, teach, forget -------------------------------------------------------


def _parse(text: str, source: str) -> list[syntax.Statement]:
    """:raises ValidationError: the text does not parse (naming line and column)."""
    try:
        return syntax.parse(text)
    except syntax.ParseError as e:
        raise ValidationError(f"{source}: {e}") from None


def _script(statements: tuple[str, ...], kind: type[syntax.Statement], what: str) -> str:
    """The statements as one script, each checked to be a ``kind``.

    :raises ValidationError: one does not parse, or is not a ``what``.
    """
    for number, text in enumerate(statements, 1):
        parsed = _parse(text, f"argument {number}")
        wrong = [s for s in parsed if not isinstance(s, kind)]
        if wrong or not parsed:
            raise ValidationError(f"argument {number}: {text!r} is not a {what}")
    return "\n".join(_ended(t) for t in statements)


def _ended(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", ";", "}")) else text + "."


def execute(client: Client, script: str) -> dict[str, Any]:
    """Run a script on ``POST /execute``; its answer (``result``, ``statements``)."""
    answer: dict[str, Any] = client.call("POST", "/execute", {"command": script})
    return answer


def run_script(client: Client, script: str, as_json: bool) -> None:
    """Run a script and print its answer: each statement's message for people, all of
    it as JSON. When a statement is refused, the messages of those that ran (and
    stay done) are printed before the error is raised.

    :raises ClientError: the server refused a statement (or the script).
    """
    try:
        answer = execute(client, script)
    except ClientError as e:
        if not as_json:
            for statement in (e.details or {}).get("statements") or ():
                click.echo(statement["message"])
        raise
    if as_json:
        print_json(answer)
        return
    for statement in answer["statements"]:
        click.echo(statement["message"])


@click.command()
@click.argument("facts", nargs=-1, required=True)
@client_command
def tell(remote: Remote, facts: tuple[str, ...]) -> None:
    """Store facts: nocturnus tell 'parent(alice, bob)' 'parent(bob, charlie)'.

    Each FACT is written in the text syntax, with an optional scope and attributes:
    'plan(acme, pro) @what-if {"confidence": 0.9, "ttl": 60000}'; NOT p(a) is an
    explicitly negated fact.
    """
    script = _script(facts, syntax.Tell, "fact")
    run_script(remote.client, script, remote.as_json)


@click.command()
@click.argument("rules", nargs=-1, required=True)
@client_command
def teach(remote: Remote, rules: tuple[str, ...]) -> None:
    """Store rules: nocturnus teach 'gp(?x, ?z) :- parent(?x, ?y), parent(?y, ?z)'.

    A rule may name a scope and a confidence: 'h(?x) :- b(?x) @what-if {"confidence": 0.8}'.
    """
    script = _script(rules, syntax.Teach, "rule (head :- body)")
    run_script(remote.client, script, remote.as_json)


@click.command()
@click.argument("facts", nargs=-1, required=True)
@client_command
def forget(remote: Remote, facts: tuple[str, ...]) -> None:
    """Remove stored facts (and what was derived from them).

    nocturnus forget 'parent(alice, bob)'
    """
    _script(facts, syntax.Tell, "fact")  # a fact as tell takes it, without attributes
    script = "\n".join(f"RETRACT {t.strip().rstrip('.;')};" for t in facts)
    run_script(remote.client, script, remote.as_json)


# -- asking -------------------------------------------------------------------------------


@click.command()
@click.argument("goal")
@click.option("--proof", is_flag=True, help="Show how each answer was derived")
@client_command
def ask(remote: Remote, goal: str, proof: bool) -> None:
    """Ask a question: nocturnus ask 'grandparent(?x, charlie)'.

    Prints a table of the variables' values (one row per answer); a question without
    variables prints yes or no. GOAL may name a scope ('p(?x) @what-if'); without one
    every scope is asked.
    """
    try:
        question = syntax.parse_goal(goal)
    except syntax.ParseError as e:
        raise ValidationError(f"goal: {e}") from None
    body = {**question.body(), "withProof": proof}
    answer = remote.client.call("POST", "/ask", body)
    if remote.as_json:
        print_json(answer)
        return
    click.echo(answer_text(answer, proof))


def answer_text(answer: dict[str, Any], proof: bool) -> str:
    """An ``/ask`` answer for people: a table of bindings, yes/no, or proofs."""
    results, bindings = answer["results"], answer["bindings"]
    if proof:
        return "\n".join(_proof_lines(r["proof"], 0) for r in results) or "no"
    names = list(bindings[0]) if bindings else []
    if not names:
        return "yes" if results else "no"
    rows = [[b.get(n) for n in names] for b in bindings]
    count = f"{len(rows)} answer{'s' if len(rows) != 1 else ''}"
    return table(names, rows) + f"\n({count})"


def atom_text(atom: dict[str, Any]) -> str:
    """``p(a, "b c")`` or ``NOT p(a)``, as the text syntax writes it."""
    return syntax_text.atom(
        syntax.Atom(atom["predicate"], tuple(atom["args"]), bool(atom.get("negated")))
    )


def _proof_lines(node: dict[str, Any], depth: int) -> str:
    how = f"by rule {node['rule']}" if node.get("rule") else node["type"]
    lines = ["  " * depth + f"{atom_text(node['goal'])}  [{how}]"]
    lines += [_proof_lines(child, depth + 1) for child in node.get("children") or ()]
    return "\n".join(lines)


@click.command()
@click.option("--max-facts", type=click.IntRange(1, 10_000), default=25, show_default=True)
@click.option(
    "--goal",
    "goals",
    multiple=True,
    help="Put facts relevant to this goal first, e.g. 'eligible(?who)' (repeatable)",
)
@click.option("--session", default=None, help="Session id (later calls can diff it)")
@click.option("--scope", default=None, help="Only this scope [every scope]")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["predicate", "natural", "structured"]),
    default="predicate",
    show_default=True,
)
@client_command
def context(
    remote: Remote,
    max_facts: int,
    goals: tuple[str, ...],
    session: str | None,
    scope: str | None,
    fmt: str,
) -> None:
    """Print the context window an agent would get (POST /context/optimize)."""
    body: dict[str, Any] = {"maxFacts": max_facts, "format": fmt}
    parsed = []
    for goal in goals:
        try:
            parsed.append(syntax.parse_goal(goal).body())
        except syntax.ParseError as e:
            raise ValidationError(f"--goal {goal!r}: {e}") from None
    if parsed:
        body["goals"] = [{"predicate": g["predicate"], "args": g["args"]} for g in parsed]
    if session is not None:
        body["sessionId"] = session
    if scope is not None:
        body["scope"] = scope
    window = remote.client.call("POST", "/context/optimize", body)
    if remote.as_json:
        print_json(window)
        return
    click.echo(window["formattedText"] or "(the context window is empty)")
    click.echo(
        f"% {window['totalFactsIncluded']} of {window['totalFactsAvailable']} facts, "
        f"~{window['tokenEstimate']} tokens"
    )


# -- the text syntax in and out ---------------------------------------------------------------


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@client_command
def import_text(remote: Remote, file: Path) -> None:
    """Run a file of the text syntax (FILE, or - for stdin) on the server.

    Every statement is parsed first (an error names the file's line and column and
    nothing runs); they then run in order, each committed on its own, in scripts of
    at most 10 000 statements. Reads what `nocturnus export-text` writes. (`nocturnus
    restore` is the offline one: a backup file into a data dir.)
    """
    text = sys.stdin.read() if str(file) == "-" else file.read_text()
    statements = _parse(text, str(file))
    done: list[dict[str, Any]] = []
    for first, script in chunks(text, statements, MAX_STATEMENTS):
        try:
            done += execute(remote.client, script)["statements"]
        except ClientError as e:
            where = f"{file}, in the statements from line {first}"
            raise ClientError(f"{where}: {e} ({len(done)} statements ran before)") from None
    if remote.as_json:
        print_json({"statements": done, "count": len(done)})
        return
    kinds: dict[str, int] = {}
    for statement in done:
        kinds[statement["kind"]] = kinds.get(statement["kind"], 0) + 1
        if statement["kind"] in ("ask", "test"):
            click.echo(statement["message"])
    summary = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
    click.echo(f"ran {len(done)} statements from {file}" + (f": {summary}" if done else ""))


def chunks(
    text: str, statements: list[syntax.Statement], size: int
) -> list[tuple[int, str]]:
    """``text`` cut into scripts of at most ``size`` statements, where statements
    start: (first line, script) each."""
    starts: list[int] = [0]
    for source_line in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(source_line))
    cuts = [
        (s.line, starts[s.line - 1] + s.column - 1) for s in statements[size::size]
    ]
    pieces: list[tuple[int, str]] = []
    begin, first = 0, 1
    for line, offset in cuts:
        pieces.append((first, text[begin:offset]))
        begin, first = offset, line
    pieces.append((first, text[begin:]))
    return [(line, piece) for line, piece in pieces if piece.strip()]


@click.command("export-text")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File to write, never overwritten [stdout]",
)
@client_command
def export_text(remote: Remote, out: Path | None) -> None:
    """Write the tenant's facts, rules and constraints as text syntax (from a server).

    `nocturnus import FILE` reads it back, into this or another server, database or
    tenant. Facts visible now are written with their scope and attributes (a ttl as
    the validUntil it ends at); the tenant's own rules (not the database's) and its
    constraints follow, each part in a stable order. (`nocturnus export` is the
    offline one: jsonl or SQLite from a data dir.)
    """
    client = remote.client
    taken = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    where = f"database {client.database}, tenant {client.tenant}"
    lines = [f"% nocturnus export-text: {where}, {taken}"]
    lines += [_fact_line(f) for f in _all_facts(client)]
    rules = client.call("GET", "/rules")["rules"]
    # sorted like the facts, by their text: the same knowledge exports the same lines
    lines += sorted(_rule_line(r) for r in rules if r["level"] == "tenant")
    constraints = client.call("GET", "/constraints")["constraints"]
    lines += sorted(c["text"] + "." for c in constraints)
    text = "\n".join(lines) + "\n"
    if out is None:
        click.echo(text, nl=False)
        return
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        fail(f"{out} exists: export-text never overwrites a file")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    if remote.as_json:
        print_json({"out": str(out), "statements": len(lines) - 1})
    else:
        click.echo(f"exported {len(lines) - 1} statements to {out}", err=True)


def _all_facts(client: Client) -> list[dict[str, Any]]:
    path = f"/admin/databases/{client.database}/facts"
    facts: list[dict[str, Any]] = []
    offset: int | None = 0
    while offset is not None:
        page = client.call("GET", path, query={"offset": offset, "limit": FACTS_PAGE})
        facts += page["facts"]
        offset = page["nextOffset"]
    return facts


def _fact_line(fact: dict[str, Any]) -> str:
    attributes: dict[str, Any] = {}
    if fact["confidence"] is not None:
        attributes["confidence"] = fact["confidence"]
    if fact["validFrom"] != fact["createdAt"]:
        attributes["validFrom"] = fact["validFrom"]
    until = fact["validUntil"]
    if fact["ttl"] is not None:  # the ttl counts from createdAt: keep when it ends
        ends = fact["createdAt"] + fact["ttl"]
        until = ends if until is None else min(until, ends)
    if until is not None:
        attributes["validUntil"] = until
    if fact["metadata"]:
        attributes["metadata"] = fact["metadata"]
    atom = syntax.Atom(fact["predicate"], tuple(fact["args"]), fact["negated"])
    scope = None if fact["scope"] == "main" else fact["scope"]
    return syntax_text.statement(syntax.Tell(1, 1, atom, scope, attributes))


def _rule_line(rule: dict[str, Any]) -> str:
    head = rule["head"]
    premises = tuple(
        syntax.Atom(b["predicate"], tuple(b["args"]), b["negated"], b["naf"])
        for b in rule["body"]
    )
    attributes = {} if rule["confidence"] is None else {"confidence": rule["confidence"]}
    statement = syntax.Teach(
        1,
        1,
        syntax.Atom(head["predicate"], tuple(head["args"]), head["negated"]),
        premises,
        rule["scope"],
        attributes,
    )
    return syntax_text.statement(statement)
