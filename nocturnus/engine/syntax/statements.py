"""What a parsed script holds: one value per statement, with where it was written.

Atoms keep their arguments in the API's own form — a string starting with ``?`` is a
variable, everything else a constant — so a statement turns into exactly the JSON body
of its REST twin (``/tell``, ``/teach``, ``/ask``, ``/forget``) and is validated by the
same schema; nothing here is a second data model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from nocturnus.engine.terms import Const


@dataclass(frozen=True, slots=True)
class Atom:
    """``predicate(args…)``, maybe negated (explicitly) or ``naf`` (as failure).

    A comparison is an atom too: its predicate is the operator (``<``, ``>=``, ``!=``…)
    and it has two arguments, as in the ``/teach`` body.
    """

    predicate: str
    args: tuple[Const, ...]
    negated: bool = False
    naf: bool = False

    def literal(self) -> dict[str, Any]:
        """The ``{predicate, args, negated, naf}`` literal of a ``/teach`` body."""
        return {
            "predicate": self.predicate,
            "args": list(self.args),
            "negated": self.negated,
            "naf": self.naf,
        }


@dataclass(frozen=True, slots=True)
class Statement:
    """Base of every statement: ``line`` and ``column`` of its first token."""

    kind: ClassVar[str] = ""
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class Tell(Statement):
    """A fact: ``parent(alice, bob).``, ``ASSERT NOT paid(o7);``.

    ``attributes`` are the ``{…}`` annotation (``confidence``, ``ttl``, ``validFrom``,
    ``validUntil``, ``metadata``, ``conflictStrategy``), as written.
    """

    kind: ClassVar[str] = "tell"
    atom: Atom
    scope: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        """The ``/tell`` body of this fact."""
        return {
            **self.attributes,
            "predicate": self.atom.predicate,
            "args": list(self.atom.args),
            "negated": self.atom.negated,
            "scope": self.scope,
        }


@dataclass(frozen=True, slots=True)
class Teach(Statement):
    """A rule: ``grandparent(?x, ?z) :- parent(?x, ?y), parent(?y, ?z).``"""

    kind: ClassVar[str] = "teach"
    head: Atom
    premises: tuple[Atom, ...]
    scope: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        """The ``/teach`` body of this rule."""
        head = self.head.literal()
        del head["naf"]
        return {
            **self.attributes,
            "head": head,
            "body": [p.literal() for p in self.premises],
            "scope": self.scope,
        }


@dataclass(frozen=True, slots=True)
class Ask(Statement):
    """A question: ``?- grandparent(?x, charlie).``, ``INFER g(?x) WITH PROOF;``.

    ``explain`` marks ``EXPLAIN g;``: the answers with their proofs.
    """

    kind: ClassVar[str] = "ask"
    goal: Atom
    scope: str | None = None
    with_proof: bool = False
    explain: bool = False

    def body(self) -> dict[str, Any]:
        """The ``/ask`` body of this question."""
        return {
            "predicate": self.goal.predicate,
            "args": list(self.goal.args),
            "negated": self.goal.negated,
            "scope": self.scope,
            "withProof": self.with_proof or self.explain,
        }


@dataclass(frozen=True, slots=True)
class Retract(Statement):
    """``RETRACT p(a);``: remove one stored fact (``/forget``)."""

    kind: ClassVar[str] = "retract"
    atom: Atom
    scope: str | None = None

    def body(self) -> dict[str, Any]:
        """The ``/forget`` body of this retraction."""
        return {
            "predicate": self.atom.predicate,
            "args": list(self.atom.args),
            "negated": self.atom.negated,
            "scope": self.scope,
        }


@dataclass(frozen=True, slots=True)
class Restrict(Statement):
    """A constraint: the conjunction must never hold (``RESTRICT { a(?x), b(?x) }``)."""

    kind: ClassVar[str] = "restrict"
    premises: tuple[Atom, ...]

    def body(self) -> dict[str, Any]:
        """The constraint as ``{body}`` (literals as in ``/teach``); it holds in every
        scope of the tenant."""
        return {"body": [p.literal() for p in self.premises]}


@dataclass(frozen=True, slots=True)
class Expectation:
    """One line of a test's EXPECT block."""

    kind: str  # "provable" | "not_provable" | "count"
    goal: Atom
    line: int
    column: int
    count: int | None = None


@dataclass(frozen=True, slots=True)
class Test(Statement):
    """``TEST "name" { GIVEN { … } EXPECT { … } }``: run in a scratch knowledge base."""

    kind: ClassVar[str] = "test"
    __test__: ClassVar[bool] = False  # not a pytest class
    name: str
    given: tuple[Statement, ...]
    expectations: tuple[Expectation, ...]
