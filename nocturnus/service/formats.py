"""Plain-text renderings of context entries: ``predicate``, ``natural`` and ``structured``.

Pure functions of their inputs (no LLM, no clock), so the same window always renders to
the same text. ``natural`` writes one plain English sentence per fact from the predicate
name: ``customer_tier(acme, enterprise)`` → "The customer tier of acme is enterprise.",
``likes(alice, bob)`` → "alice likes bob.", ``human(socrates)`` → "socrates is human.".
"""

from __future__ import annotations

import re

from nocturnus.engine.rules import format_term
from nocturnus.engine.terms import Const
from nocturnus.service.facts import FactKey

FORMATS = ("structured", "natural", "predicate")

# first words that already read as a verb between two arguments: "alice likes bob"
_VERBS = frozenset(
    [
        "is",
        "are",
        "was",
        "were",
        "has",
        "have",
        "had",
        "can",
        "could",
        "will",
        "does",
        "do",
        "did",
        "owns",
        "likes",
        "loves",
        "hates",
        "knows",
        "uses",
        "needs",
        "wants",
        "prefers",
        "reports",
        "manages",
        "contains",
        "includes",
        "belongs",
        "works",
        "lives",
        "depends",
        "requires",
        "blocks",
        "sees",
        "follows",
        "holds",
    ]
)


def fact_text(key: FactKey) -> str:
    """``plan(enterprise)``, ``NOT plan(free)``: the text of a fact in messages, lines
    and counts.

    The same text as ``Literal(predicate, args, negated).text()``, without building
    the literal (every ``tell`` answers with it).
    """
    atom = f"{key.predicate}({', '.join(map(format_term, key.args))})"
    return "NOT " + atom if key.negated else atom


def predicate_line(key: FactKey, confidence: float | None, show_scope: bool) -> str:
    """One ``pred(a, b)`` line, with the confidence and a non-main scope when useful."""
    line = fact_text(key)
    if confidence is not None:
        line += f" [confidence {_number(confidence)}]"
    if show_scope and key.scope != "main":
        line += f" @{key.scope}"
    return line


def words(predicate: str) -> str:
    """``customer_tier`` / ``customerTier`` / ``customer-tier`` → ``customer tier``."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", predicate)
    return (
        " ".join(part for part in re.split(r"[_\-\s.:]+", spaced) if part).lower()
        or predicate
    )


def sentence(key: FactKey, confidence: float | None, show_scope: bool) -> str:
    """One plain sentence for a fact (see the module docstring)."""
    args = [_arg(a) for a in key.args]
    name = words(key.predicate)
    verb = name.split(" ", 1)[0] in _VERBS or name.endswith("s") and " " not in name
    if not args:
        text = f"{name[:1].upper()}{name[1:]} holds"
        negative = f"{name[:1].upper()}{name[1:]} does not hold"
    elif len(args) == 1:
        text = f"{args[0]} is {name}"
        negative = f"{args[0]} is not {name}"
    elif len(args) == 2 and verb:
        text = f"{args[0]} {name} {args[1]}"
        negative = f"it is not the case that {args[0]} {name} {args[1]}"
    elif len(args) == 2:
        text = f"The {name} of {args[0]} is {args[1]}"
        negative = f"The {name} of {args[0]} is not {args[1]}"
    else:
        listed = ", ".join(args[:-1]) + " and " + args[-1]
        text = f"{name[:1].upper()}{name[1:]} holds for {listed}"
        negative = f"{name[:1].upper()}{name[1:]} does not hold for {listed}"
    out = negative if key.negated else text
    out = out[:1].upper() + out[1:]
    notes = []
    if confidence is not None:
        notes.append(f"confidence {_number(confidence)}")
    if show_scope and key.scope != "main":
        notes.append(f"in scope {key.scope}")
    if notes:
        out += f" ({', '.join(notes)})"
    return out + "."


def structured_line(
    key: FactKey,
    confidence: float | None,
    salience: float,
    category: str,
    show_scope: bool,
) -> str:
    """``- plan(enterprise) | salience 0.93 | recent`` under its predicate's heading."""
    line = f"- {predicate_line(key, confidence, show_scope)} | salience {_number(salience)}"
    return f"{line} | {category}"


def render_line(
    fmt: str,
    key: FactKey,
    confidence: float | None,
    salience: float,
    category: str,
    show_scope: bool,
) -> str:
    """One window line of a fact in format ``fmt`` (:data:`FORMATS`)."""
    if fmt == "natural":
        return sentence(key, confidence, show_scope)
    if fmt == "structured":
        return structured_line(key, confidence, salience, category, show_scope)
    return predicate_line(key, confidence, show_scope)


def render_text(fmt: str, lines: list[tuple[str, str]], rules: list[str]) -> str:
    """Join entry lines (``(predicate, line)`` pairs, window order) and rule texts.

    ``structured`` groups lines under one ``## predicate`` heading each, in order of
    first appearance; the other formats keep one line per fact in window order.
    """
    out: list[str] = []
    if fmt == "structured":
        groups: dict[str, list[str]] = {}
        for predicate, line in lines:
            groups.setdefault(predicate, []).append(line)
        for predicate, group in groups.items():
            out.append(f"## {predicate}")
            out.extend(group)
        if rules:
            out.append("## rules")
            out.extend(f"- {r}" for r in rules)
    else:
        out.extend(line for _, line in lines)
        if rules:
            out.append("Rules:" if fmt == "natural" else "% rules")
            out.extend(rules)
    return "\n".join(out)


def token_estimate(text: str) -> int:
    """Tokens as characters / 4, rounded up (a common rule of thumb for English)."""
    return (len(text) + 3) // 4


def _arg(value: Const) -> str:
    return value if isinstance(value, str) else _number(value)


def _number(value: float) -> str:
    return repr(value) if isinstance(value, float) else str(value)
