"""``POST /synthesize``: a question answered from the knowledge base, and only from it.

The knowledge base does the reasoning and the LLM only translates. A question written as
a goal (``grandparent(?x, charlie)``) is run as it is, without any LLM. Otherwise the
LLM plans the goals to run from the question and the tenant's predicates; the goals run
by inference (with proofs); then the LLM words the answer from those answers alone,
citing them (a citation of anything that is not an answer is refused as invalid). Every
answer's derivation comes from its proof: a stored fact is a ``fact_match``, a derived
one a ``rule_application`` naming the rule and the stored facts it rests on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from nocturnus.engine.rules import Literal
from nocturnus.engine.syntax import ParseError, parse_goal
from nocturnus.engine.terms import parse_term
from nocturnus.errors import ValidationError
from nocturnus.service import answers, tenants
from nocturnus.service.database import Database, DatabaseState
from nocturnus.service.extraction.extractor import Budget, Extractor
from nocturnus.service.extraction.prompts import SYNTHESIZE, prompt
from nocturnus.service.formats import fact_text
from nocturnus.service.salience import proof_facts

Db = Database[DatabaseState]

MAX_ANSWERS_PER_QUERY = 50
MAX_PREDICATES_SHOWN = 200


@dataclass(frozen=True, slots=True)
class Plan:
    """A checked synthesis reply: goals to run, or the answer worded from results."""

    queries: tuple[Literal, ...] = ()
    answer: str = ""
    confidence: float | None = None
    used: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()


class SynthesisContract(Protocol):
    """The reply schema of the ``synthesize`` prompt and its check (API layer)."""

    schema: dict[str, Any]

    def read_plan(self, data: Any) -> Plan:
        """:raises ValidationError: the reply breaks the schema."""


@dataclass(frozen=True, slots=True)
class Step:
    """One answer of one goal, and how the knowledge base reached it."""

    fact: str
    kind: str
    rule: str | None
    premises: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Synthesis:
    """The answer and everything it rests on."""

    answer: str
    confidence: float
    derivation: tuple[Step, ...]
    queries: tuple[str, ...]
    missing: tuple[str, ...]
    provider: str
    model: str | None
    prompt: str | None
    warning: str | None = None


def goal_of(question: str) -> Literal | None:
    """The question as a goal when it is written as one (``parent(?x, bob)``), else None."""
    try:
        asked = parse_goal(question)
    except ParseError:
        return None
    goal = asked.goal
    return Literal(goal.predicate, tuple(parse_term(a) for a in goal.args), goal.negated)


async def synthesize(
    db: Db,
    tenant: str,
    extractor: Extractor,
    contract: SynthesisContract,
    question: str,
    scope: str | None,
    budget: Budget,
) -> Synthesis:
    """Answer ``question`` (see the module).

    :raises LlmNotConfigured: a question not written as a goal, without an LLM.
    :raises LlmTimeout, LlmRateLimited, LlmFailed, PayloadTooLarge: from the LLM calls.
    """
    goal = goal_of(question)
    if goal is not None:
        steps = await _run(db, tenant, (goal,), scope)
        return _plain(goal, steps)
    provider = extractor.require()
    instructions = prompt(SYNTHESIZE)

    def ask_with(user: str, check: Any) -> Any:
        return extractor.ask(
            "synthesize", instructions.text, user, contract.schema, check, budget
        )

    catalogue = await _catalogue(db, tenant, scope)
    planned = await ask_with(
        f"Question: {question}\n\nKnown predicates:\n{catalogue}", contract.read_plan
    )
    if planned.value is None:
        return Synthesis("", 0.0, (), (), (), provider.name, provider.model,
                         instructions.name, planned.warning)
    goals = planned.value.queries
    steps = await _run(db, tenant, goals, scope)
    results = [s.fact for s in steps]
    listed = "\n".join(f"- {r}" for r in results) or "(no results)"

    def read_answer(data: Any) -> Plan:
        plan = contract.read_plan(data)
        unknown = [u for u in plan.used if u not in results]
        if unknown:
            raise ValidationError(f"usedFacts cites {unknown[0]!r}, which is not a result")
        return plan

    answered = await ask_with(
        f"Question: {question}\n\nQuery results:\n{listed}", read_answer
    )
    texts = tuple(g.text() for g in goals)
    if answered.value is None:
        return Synthesis("", 0.0, tuple(steps), texts, (), provider.name, provider.model,
                         instructions.name, answered.warning)
    plan: Plan = answered.value
    used = set(plan.used)
    return Synthesis(
        plan.answer,
        plan.confidence if plan.confidence is not None else (1.0 if used else 0.0),
        tuple(s for s in steps if s.fact in used) or tuple(steps),
        texts,
        plan.missing,
        provider.name,
        provider.model,
        instructions.name,
    )


async def _catalogue(db: Db, tenant: str, scope: str | None) -> str:
    stats = await tenants.predicates(db, tenant, scope)
    lines = [f"- {s.predicate}/{s.arity}" for s in stats[:MAX_PREDICATES_SHOWN]]
    return "\n".join(lines) or "(the knowledge base is empty)"


async def _run(
    db: Db, tenant: str, goals: tuple[Literal, ...], scope: str | None
) -> list[Step]:
    steps: list[Step] = []
    for goal in goals:
        found = await tenants.ask(
            db, tenant, goal, scope, limit=MAX_ANSWERS_PER_QUERY, with_proof=True
        )
        steps.extend(_step(a) for a in found)
    return steps


def _step(answer: answers.Answer) -> Step:
    fact = fact_text(answer.key)
    proof = answer.proof
    if answer.record is not None or proof is None or proof.type == "fact":
        return Step(fact, "fact_match", None, ())
    rule = proof.rule.text() if proof.rule is not None else None
    premises = tuple(fact_text(k) for k in proof_facts(proof, answer.key.scope))
    return Step(fact, "rule_application", rule, premises)


def _plain(goal: Literal, steps: list[Step]) -> Synthesis:
    """The answer to a goal without an LLM: its answers, as facts."""
    if not steps:
        return Synthesis(
            "No answer: the knowledge base proves nothing for this question.",
            0.0, (), (goal.text(),), (f"facts or rules proving {goal.text()}",),
            "none", None, None,
        )
    return Synthesis(
        " ".join(s.fact for s in steps), 1.0, tuple(steps), (goal.text(),), (),
        "none", None, None,
    )
