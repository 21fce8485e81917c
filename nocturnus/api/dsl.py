"""The text syntax over REST: ``/execute``, ``/assert/template``, ``/test``,
``/constraints``.

``POST /execute`` parses the whole script first (a syntax error names its line and
column and runs nothing), turns each statement into the body of its REST twin and
validates it with that route's own schema, checks the caller may run every statement,
and only then runs them in order through the service (``service/script.py``). The
answer keeps the original product's ``result`` text (what its SDK's ``execute``
returns) next to one structured entry per statement.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sanic import Blueprint

from nocturnus.api import permissions, render
from nocturnus.api.endpoint import Call, endpoint
from nocturnus.api.knowledge import (
    ASK_BODY,
    LITERAL,
    MAX_RULE_BODY,
    PATTERN_BODY,
    TEACH_BODY,
    TELL_BODY,
    constants,
    goal_literal,
    negated_of,
    rule_literal,
    teach_command,
    tell_command,
    write_scope,
)
from nocturnus.api.schema import PREDICATE, SCOPE, Schema, nullable, obj, validate
from nocturnus.engine import syntax
from nocturnus.engine.proofs import Proof
from nocturnus.engine.rules import Literal
from nocturnus.engine.syntax import text as syntax_text
from nocturnus.engine.terms import Const
from nocturnus.errors import NocturnusError, ValidationError
from nocturnus.service import script, templates, tenants
from nocturnus.service.answers import Answer
from nocturnus.service.authenticator import ANONYMOUS
from nocturnus.service.commands import (
    MAIN_SCOPE,
    RetractOutcome,
    TeachOutcome,
    TeachRule,
    TellFact,
    TellOutcome,
)
from nocturnus.service.constraints import (
    AddConstraint,
    ConstraintRecord,
    RestrictOutcome,
)
from nocturnus.service.facts import FactKey
from nocturnus.service.formats import fact_text
from nocturnus.service.logictests import (
    EXPECTATION_KINDS,
    Expectation,
    LogicTest,
    SetupStep,
    TestResult,
)

dsl = Blueprint("dsl")

MAX_STATEMENTS = 10_000
MAX_TESTS = 100

EXECUTE_BODY = obj(["command"], command={"type": "string", "minLength": 1})
RESTRICT_BODY = obj(
    ["body"],
    body={"type": "array", "items": LITERAL, "minItems": 1, "maxItems": MAX_RULE_BODY},
)
TEMPLATE_BODY = obj(
    ["type", "predicates"],
    type={"type": "string", "enum": list(templates.TEMPLATE_TYPES)},
    predicates=obj([], **{role: PREDICATE for role in templates.ROLES}),
    args=nullable(
        {
            "type": "array",
            "items": {"type": "string", "pattern": r"^\??[A-Za-z0-9_]{1,64}$"},
            "maxItems": 64,
        }
    ),
    scope=SCOPE,
)
SETUP_STEP = obj(
    ["type"],
    type={"type": "string", "enum": ["assert_fact", "assert_rule", "restrict"]},
    fact=TELL_BODY,
    rule=TEACH_BODY,
    constraint=RESTRICT_BODY,
)
EXPECTATION = obj(
    ["type", "goal"],
    type={"type": "string", "enum": list(EXPECTATION_KINDS)},
    goal=PATTERN_BODY,
    expected=nullable({"type": "array", "items": PATTERN_BODY, "maxItems": 10_000}),
    count=nullable({"type": "integer", "minimum": 0}),
)
TEST_CASE = obj(
    ["name", "expectations"],
    name={"type": "string", "minLength": 1, "maxLength": 200},
    setup=nullable({"type": "array", "items": SETUP_STEP, "maxItems": 10_000}),
    expectations={
        "type": "array",
        "items": EXPECTATION,
        "minItems": 1,
        "maxItems": 1000,
    },
)
TEST_BODY = obj(
    ["tests"],
    tests={"type": "array", "items": TEST_CASE, "minItems": 1, "maxItems": MAX_TESTS},
)
STATEMENT_PERMISSIONS = {
    "tell": "fact_write",
    "retract": "fact_write",
    "teach": "rule_write",
    "restrict": "rule_write",
    "ask": "inference",
    "test": "inference",
}


# -- POST /execute --------------------------------------------------------------------


@endpoint(
    dsl,
    "POST",
    "/execute",
    summary="Run a script of the text syntax (facts, rules, questions, constraints)",
    body=EXECUTE_BODY,
    tenant=True,
)
async def execute(call: Call) -> dict[str, Any]:
    try:
        statements = syntax.parse(call.body["command"], max_statements=MAX_STATEMENTS)
    except syntax.ParseError as e:
        raise ValidationError(
            f"command: {e}",
            field="command",
            details={"line": e.line, "column": e.column},
        ) from None
    if not statements:
        raise ValidationError("command: holds no statement", field="command")
    if call.principal is not ANONYMOUS:
        for kind in sorted({s.kind for s in statements}):
            rule = permissions.data(STATEMENT_PERMISSIONS[kind])
            permissions.check_permission(call.principal, rule)
    steps = [_step(s) for s in statements]
    outcome = await script.run(call.database, call.tenant_id, steps)
    entries = [
        _entry(s, step, result)
        for s, step, result in zip(statements, steps, outcome.outcomes, strict=False)
    ]
    if outcome.failure is not None:
        failed = statements[len(outcome.outcomes)]
        raise _at(
            outcome.failure,
            failed,
            {"executed": len(entries), "statements": entries},
        )
    return {
        "result": "\n".join(e["message"] for e in entries),
        "statements": entries,
        "count": len(entries),
    }


def _at(
    error: NocturnusError, statement: syntax.Statement, details: dict[str, Any]
) -> NocturnusError:
    """``error`` located at ``statement``: the message and details name its position."""
    error.message = f"line {statement.line}, column {statement.column}: {error.message}"
    error.args = (error.message,)
    error.details = {
        **(error.details or {}),
        "line": statement.line,
        "column": statement.column,
        **details,
    }
    return error


def _checked(
    statement: syntax.Statement, body: dict[str, Any], schema: Schema
) -> dict[str, Any]:
    try:
        validate(body, schema)
    except ValidationError as e:
        raise _at(e, statement, {}) from None
    return body


def _step(statement: syntax.Statement) -> script.Step:
    """The service step of one statement, validated like the body of its REST twin."""
    try:
        return _convert(statement)
    except ValidationError as e:
        if e.details and "line" in e.details:
            raise
        raise _at(e, statement, {}) from None


def _convert(statement: syntax.Statement) -> script.Step:
    if isinstance(statement, syntax.Tell):
        return tell_command(_checked(statement, statement.body(), TELL_BODY))
    if isinstance(statement, syntax.Teach):
        return teach_command(_checked(statement, statement.body(), TEACH_BODY))
    if isinstance(statement, syntax.Ask):
        body = _checked(statement, statement.body(), ASK_BODY)
        return script.Question(
            goal_literal(body), body.get("scope"), bool(body["withProof"])
        )
    if isinstance(statement, syntax.Retract):
        body = _checked(statement, statement.body(), PATTERN_BODY)
        key = FactKey(
            write_scope(body),
            body["predicate"],
            negated_of(body),
            constants(body["args"]),
        )
        return script.Forget(key)
    if isinstance(statement, syntax.Restrict):
        return _constraint(_checked(statement, statement.body(), RESTRICT_BODY))
    assert isinstance(statement, syntax.Test)
    setup: list[SetupStep] = []
    for given in statement.given:
        step = _step(given)
        assert isinstance(step, (TellFact, TeachRule, AddConstraint))
        setup.append(step)
    expectations = []
    for expected in statement.expectations:
        body = {
            "predicate": expected.goal.predicate,
            "args": list(expected.goal.args),
            "negated": expected.goal.negated,
        }
        try:
            validate(body, PATTERN_BODY)
            goal = goal_literal(body)
        except ValidationError as e:
            e.message = f"line {expected.line}, column {expected.column}: {e.message}"
            e.details = {
                **(e.details or {}),
                "line": expected.line,
                "column": expected.column,
            }
            raise
        kind = "result_count" if expected.kind == "count" else expected.kind
        expectations.append(Expectation(kind, goal, count=expected.count))
    return LogicTest(statement.name, tuple(setup), tuple(expectations))


def _constraint(body: dict[str, Any]) -> AddConstraint:
    return AddConstraint(tuple(rule_literal(b) for b in body["body"]))


# -- rendering ------------------------------------------------------------------------


def _entry(
    statement: syntax.Statement, step: script.Step, outcome: script.Outcome
) -> dict[str, Any]:
    """One statement's part of the answer: its kind, position, message and result."""
    entry: dict[str, Any] = {
        "kind": statement.kind,
        "line": statement.line,
        "column": statement.column,
    }
    if isinstance(outcome, TellOutcome):
        entry.update(
            stored=outcome.stored,
            fact=render.fact_atom(outcome.record),
            message=outcome.message,
        )
        if outcome.replaced:
            entry["replaced"] = [render.fact_atom(r) for r in outcome.replaced]
    elif isinstance(outcome, TeachOutcome):
        entry.update(
            stored=outcome.stored,
            rule=render.rule_info(outcome.record),
            message=("Rule stored: " if outcome.stored else "Rule already known: ")
            + outcome.record.rule.text(),
        )
    elif isinstance(outcome, RetractOutcome):
        assert isinstance(step, script.Forget)
        entry.update(
            retracted=len(outcome.records), message=f"Forgotten: {fact_text(step.key)}"
        )
    elif isinstance(outcome, RestrictOutcome):
        entry.update(
            stored=outcome.stored,
            constraint=constraint_info(outcome.record),
            message=(
                "Constraint stored: "
                if outcome.stored
                else "Constraint already known: "
            )
            + outcome.record.text(),
        )
    elif isinstance(outcome, TestResult):
        entry.update(test_info(outcome))
        entry["message"] = _test_text(outcome)
    else:
        assert isinstance(step, script.Question) and isinstance(statement, syntax.Ask)
        if statement.explain:
            entry["kind"] = "explain"
        bind = render.binder(step.goal)
        entry.update(
            results=[render.answer_atom(a) for a in outcome],
            bindings=[bind(a) for a in outcome],
            count=len(outcome),
            message=answers_text(outcome, with_proof=step.with_proof),
        )
    return entry


def constraint_info(record: ConstraintRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "text": record.text(),
        "body": list(record.body),
        "createdAt": record.created_at,
    }


def answer_text(answer: Answer) -> str:
    """``grandparent(alice, charlie)``, with `` @scope`` outside ``main``."""
    key = answer.key
    atom = syntax_text.atom(syntax.Atom(key.predicate, key.args, key.negated))
    return atom if key.scope == MAIN_SCOPE else f"{atom} @{syntax_text.word(key.scope)}"


def literal_text(literal: Literal) -> str:
    """An engine literal in the text syntax (variables as ``?name``)."""
    args = tuple(render.literal_atom(literal, None)["args"])
    return syntax_text.atom(syntax.Atom(literal.predicate, args, literal.negated))


def answers_text(answers: list[Answer], *, with_proof: bool) -> str:
    """The original's answer text: ``Inferred N result(s):`` and one line per answer."""
    if not answers:
        return "No results could be inferred."
    if not with_proof:
        lines = [f"Inferred {len(answers)} result(s):"]
        lines += [f"  {answer_text(a)}" for a in answers]
        return "\n".join(lines)
    lines = [f"Inferred {len(answers)} result(s) with proofs:"]
    for answer in answers:
        lines.append(f"Result: {answer_text(answer)}")
        if answer.proof is not None:
            lines.extend(_proof_lines(answer.proof))
    return "\n".join(lines)


def _proof_lines(proof: Proof) -> Iterator[str]:
    """One indented line per proof step, depth first, without recursion."""
    stack: list[tuple[Proof, int]] = [(proof, 1)]
    while stack:
        node, depth = stack.pop()
        atom = literal_text(node.goal)
        indent = "  " * depth
        if node.type == "rule" and node.rule is not None:
            yield f"{indent}RULE: {atom} by {node.rule.text()}"
        elif node.type == "fact":
            yield f"{indent}FACT: {atom}"
        elif node.type == "naf":
            yield f"{indent}NAF: {atom} cannot be proved"
        else:
            yield f"{indent}TEST: {atom}"
        stack.extend((child, depth + 1) for child in reversed(node.children))


def test_info(result: TestResult) -> dict[str, Any]:
    """A test's verdict as JSON (``/test`` and a script's TEST statement)."""
    error = None
    if result.error is not None:
        error = {
            "code": result.error.code,
            "message": result.error.message,
            "step": result.failed_step,
        }
    return {
        "name": result.name,
        "passed": result.passed,
        "error": error,
        "expectations": [
            {
                "type": r.expectation.kind,
                "goal": literal_text(r.expectation.goal),
                "passed": r.passed,
                "count": len(r.answers),
                "answers": [list(a) for a in r.answers],
            }
            for r in result.results
        ],
    }


def _test_text(result: TestResult) -> str:
    if result.error is not None:
        step, message = result.failed_step, result.error.message
        return f"FAIL {result.name}: setup step {step}: {message}"
    if result.passed:
        return f"PASS {result.name} ({len(result.results)} expectation(s))"
    failed = [r for r in result.results if not r.passed]
    total = len(result.results)
    return f"FAIL {result.name}: {len(failed)} of {total} expectation(s) failed"


# -- POST /assert/template ------------------------------------------------------------


@endpoint(
    dsl,
    "POST",
    "/assert/template",
    summary="Teach the rules of a named argument template",
    body=TEMPLATE_BODY,
    tenant=True,
)
async def assert_template(call: Call) -> dict[str, Any]:
    body = call.body
    cmds = templates.expand(
        body["type"], body["predicates"], body.get("args") or ["x"], body.get("scope")
    )
    outcomes = await tenants.teach_many(call.database, call.tenant_id, cmds)
    return {
        "stored": sum(o.stored for o in outcomes),
        "rules": [render.rule_info(o.record) for o in outcomes],
        "message": "\n".join(
            f"Rule Asserted: {o.record.rule.text()}" for o in outcomes
        ),
    }


# -- POST /test -----------------------------------------------------------------------


@endpoint(
    dsl,
    "POST",
    "/test",
    summary="Run logic unit tests in scratch knowledge bases",
    body=TEST_BODY,
    tenant=True,
)
async def run_tests(call: Call) -> dict[str, Any]:
    tests = [_logic_test(i, case) for i, case in enumerate(call.body["tests"])]
    results = await script.test(call.database, call.tenant_id, tests)
    failed = sum(not r.passed for r in results)
    return {
        "passed": failed == 0,
        "total": len(results),
        "failed": failed,
        "results": [test_info(r) for r in results],
    }


def _logic_test(index: int, case: dict[str, Any]) -> LogicTest:
    where = f"tests[{index}]."
    setup: list[SetupStep] = []
    for i, step in enumerate(case.get("setup") or []):
        field = {
            "assert_fact": "fact",
            "assert_rule": "rule",
            "restrict": "constraint",
        }[step["type"]]
        if step.get(field) is None:
            raise ValidationError(
                f"{where}setup[{i}].{field}: is required for type {step['type']}",
                field=f"{where}setup[{i}].{field}",
            )
        if field == "fact":
            setup.append(tell_command(step["fact"], f"{where}setup[{i}].fact."))
        elif field == "rule":
            setup.append(teach_command(step["rule"]))
        else:
            setup.append(_constraint(step["constraint"]))
    expectations = []
    for i, item in enumerate(case["expectations"]):
        kind = item["type"]
        if kind == "result_count" and item.get("count") is None:
            raise ValidationError(
                f"{where}expectations[{i}].count: is required for result_count",
                field=f"{where}expectations[{i}].count",
            )
        expected: tuple[tuple[Const, ...], ...] = ()
        if kind == "results_exactly":
            expected = tuple(tuple(e["args"]) for e in item.get("expected") or [])
        goal = item["goal"]
        expectations.append(
            Expectation(
                kind, goal_literal(goal), goal.get("scope"), item.get("count"), expected
            )
        )
    return LogicTest(case["name"], tuple(setup), tuple(expectations))


# -- constraints ----------------------------------------------------------------------


@endpoint(
    dsl,
    "GET",
    "/constraints",
    summary="This tenant's RESTRICT constraints",
    tenant=True,
)
async def list_constraints(call: Call) -> dict[str, Any]:
    records = await tenants.constraints(call.database, call.tenant_id)
    return {"constraints": [constraint_info(r) for r in records], "count": len(records)}


@endpoint(
    dsl,
    "DELETE",
    "/constraints/<constraint_id>",
    summary="Remove a RESTRICT constraint",
    tenant=True,
)
async def remove_constraint(call: Call) -> dict[str, Any]:
    constraint_id = call.query["constraint_id"]
    await tenants.remove_constraint(call.database, call.tenant_id, constraint_id)
    return {"deleted": constraint_id}
