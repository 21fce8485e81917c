"""A recursive-descent parser for the text syntax (the grammar is in the README).

Two families of statements share one script: Prolog-style clauses ending in ``.``
(``p(a).``, ``h(?x) :- b(?x).``, ``?- g(?x).``) and the original product's commands
ending in ``;`` (``ASSERT``, ``RETRACT``, ``INFER``, ``EXPLAIN``, ``RESTRICT``,
``TEST``). Either terminator ends any statement, and the last one may be left out.

Negation is spelled two ways because the two families always meant different things:
in clauses, ``NOT p`` and ``-p`` are explicit negation (the negated fact must be stored)
and ``not p``, ``\\+ p`` and ``NAF p`` are negation as failure; inside the ``{…}`` of
``FORALL`` and ``RESTRICT``, ``NOT p`` is negation as failure, as in the original.
The server prints rules as ``h(?x) :- b(?x), NAF c(?x), NOT d(?x)``, which reads back
as the same rule.

Every error names the line and column of the token at fault (:class:`ParseError`).
"""

from __future__ import annotations

from typing import Any, NoReturn

from nocturnus.engine.rules import BUILTIN_NAMES
from nocturnus.engine.syntax.lexer import (
    END,
    NUMBER,
    OPERATOR,
    PUNCT,
    STRING,
    VAR,
    WORD,
    ParseError,
    Token,
    tokens,
)
from nocturnus.engine.syntax.statements import (
    Ask,
    Atom,
    Expectation,
    Restrict,
    Retract,
    Statement,
    Teach,
    Tell,
    Test,
)
from nocturnus.engine.terms import Const

COMMANDS = ("ASSERT", "RETRACT", "INFER", "EXPLAIN", "RESTRICT", "TEST", "EXTRACT")
RESERVED_ATTRIBUTES = frozenset(
    {"predicate", "args", "negated", "truthVal", "naf", "scope", "head", "body"}
)
"""Fields a statement sets from its own syntax; an annotation cannot override them."""

_TERMINATORS = (".", ";")
_CLOSERS = ("}",)
_JSON_WORDS: dict[str, Any] = {"true": True, "false": False, "null": None}
_EXPECTATIONS = {
    "PROVABLE": "provable",
    "NOT_PROVABLE": "not_provable",
    "COUNT": "count",
}


def parse(text: str, *, max_statements: int | None = None) -> list[Statement]:
    """Parse a whole script into its statements, in order.

    :raises ParseError: at the first problem, naming its line and column; also when
        the script holds more than ``max_statements`` statements.
    """
    parser = _Parser(text)
    found: list[Statement] = []
    while not parser.at(END):
        if max_statements is not None and len(found) >= max_statements:
            token = parser.peek()
            raise ParseError(
                f"a script holds at most {max_statements} statements",
                token.line,
                token.column,
            )
        found.append(parser.statement())
    return found


def parse_goal(text: str) -> Ask:
    """Parse one question, with or without ``?-`` and the final ``.``.

    ``grandparent(?x, charlie)`` and ``?- grandparent(?x, charlie).`` are the same.

    :raises ParseError: anything but exactly one question.
    """
    parser = _Parser(text)
    first = parser.peek()
    parser.accept(PUNCT, "?-")
    goal = parser.goal()
    scope = parser.scope()
    parser.end()
    if not parser.at(END):
        parser.fail("expected the end of the question")
    return Ask(first.line, first.column, goal, scope)


class _Parser:
    def __init__(self, text: str) -> None:
        self._tokens = list(tokens(text))
        self._at = 0

    # -- token access -------------------------------------------------------------

    def peek(self, ahead: int = 0) -> Token:
        return self._tokens[min(self._at + ahead, len(self._tokens) - 1)]

    def at(self, kind: str, text: str | None = None, ahead: int = 0) -> bool:
        token = self.peek(ahead)
        return token.kind == kind and (text is None or token.text == text)

    def advance(self) -> Token:
        token = self.peek()
        if token.kind != END:
            self._at += 1
        return token

    def accept(self, kind: str, text: str | None = None) -> Token | None:
        if self.at(kind, text):
            return self.advance()
        return None

    def expect(self, kind: str, text: str | None, what: str) -> Token:
        token = self.accept(kind, text)
        if token is None:
            self.fail(f"expected {what}")
        return token

    def fail(self, message: str, token: Token | None = None) -> NoReturn:
        """An unexpected token: ``message`` says what was expected instead."""
        token = token or self.peek()
        found = "the end of the script" if token.kind == END else repr(token.text)
        raise ParseError(f"{message}, found {found}", token.line, token.column)

    def reject(self, message: str, token: Token) -> NoReturn:
        """Well-formed text that means something not allowed where it stands."""
        raise ParseError(message, token.line, token.column)

    def word(self, text: str) -> Token | None:
        return self.accept(WORD, text)

    # -- statements ---------------------------------------------------------------

    def statement(self) -> Statement:
        first = self.peek()
        if self.accept(PUNCT, "?-"):
            goal = self.goal()
            ask = Ask(first.line, first.column, goal, self.scope())
            self.end()
            return ask
        if self.accept(PUNCT, ":-"):  # an integrity constraint, Datalog style
            premises = self.conjunction(braced=False, closer=None)
            restrict = Restrict(first.line, first.column, premises)
            self.end()
            return restrict
        if first.kind == WORD and first.text in COMMANDS and not self.at(PUNCT, "(", 1):
            return self.command(self.advance())
        return self.clause(first)

    def command(self, keyword: Token) -> Statement:
        name = keyword.text
        line, column = keyword.line, keyword.column
        statement: Statement
        if name == "ASSERT":
            if self.word("FORALL"):
                statement = self.forall(keyword)
            else:
                return self.clause(keyword, start=self.peek())
        elif name == "RETRACT":
            start = self.peek()
            found, arg_tokens = self.literal_with_args(braced=False)
            atom = self.fact_atom(found, "a retraction", arg_tokens, start)
            statement = Retract(line, column, atom, self.scope())
        elif name in ("INFER", "EXPLAIN"):
            goal = self.goal()
            scope = self.scope()
            with_proof = False
            if name == "INFER" and self.word("WITH"):
                self.expect(WORD, "PROOF", "PROOF after WITH")
                with_proof = True
            statement = Ask(
                line,
                column,
                goal,
                scope,
                with_proof=with_proof,
                explain=name == "EXPLAIN",
            )
        elif name == "RESTRICT":
            statement = self.restrict(keyword)
        elif name == "TEST":  # ends with its '}': a terminator is optional
            test = self.test(keyword)
            if self.peek().kind == PUNCT and self.peek().text in _TERMINATORS:
                self.advance()
            return test
        else:
            raise ParseError(
                "EXTRACT needs a language model and is not part of the text syntax; "
                "use POST /extract",
                line,
                column,
            )
        self.end()
        return statement

    def clause(self, first: Token, start: Token | None = None) -> Statement:
        """A fact or a rule; ``first`` is where the statement starts (maybe ASSERT)."""
        start = start or first
        head, arg_tokens = self.literal_with_args(braced=False)
        if head.naf:
            self.reject("a fact or a rule head cannot be negation as failure", start)
        if self.accept(PUNCT, ":-"):
            if head.predicate in BUILTIN_NAMES:
                self.reject("a rule head cannot be a comparison", start)
            premises = self.conjunction(braced=False, closer=None)
            scope, attributes = self.annotations()
            self.end()
            return Teach(first.line, first.column, head, premises, scope, attributes)
        atom = self.fact_atom(head, "a fact", arg_tokens, start)
        scope, attributes = self.annotations()
        self.end()
        return Tell(first.line, first.column, atom, scope, attributes)

    def forall(self, keyword: Token) -> Teach:
        """``FORALL ?x, ?y { head <- body AND … }``: the original's rule form."""
        self.variables()
        self.expect(PUNCT, "{", "'{' after the FORALL variables")
        start = self.peek()
        head = self.literal(braced=False)
        if head.naf:
            self.reject("a rule head cannot be negation as failure", start)
        if head.predicate in BUILTIN_NAMES:
            self.reject("a rule head cannot be a comparison", start)
        self.expect(PUNCT, "<-", "'<-' between the rule's head and body")
        premises = self.conjunction(braced=True, closer="}")
        self.expect(PUNCT, "}", "'}' closing the rule")
        scope, attributes = self.annotations()
        return Teach(keyword.line, keyword.column, head, premises, scope, attributes)

    def restrict(self, keyword: Token) -> Restrict:
        """``RESTRICT [?x, …] { a(?x) AND b(?x) } [-> CONTRADICTION]``."""
        self.variables()
        self.expect(PUNCT, "{", "'{' opening the constraint")
        premises = self.conjunction(braced=True, closer="}")
        self.expect(PUNCT, "}", "'}' closing the constraint")
        if self.accept(PUNCT, "->"):
            self.expect(WORD, "CONTRADICTION", "CONTRADICTION after '->'")
        return Restrict(keyword.line, keyword.column, premises)

    def test(self, keyword: Token) -> Test:
        """``TEST "name" { GIVEN { statements } EXPECT { expectations } }``."""
        name = self.expect(STRING, None, "the test's name as a quoted string")
        assert isinstance(name.value, str)
        self.expect(PUNCT, "{", "'{' opening the test")
        given: list[Statement] = []
        if self.word("GIVEN"):
            self.expect(PUNCT, "{", "'{' after GIVEN")
            while not self.at(PUNCT, "}"):
                if self.at(END):
                    self.fail("expected '}' closing GIVEN")
                token = self.peek()
                statement = self.statement()
                if not isinstance(statement, (Tell, Teach, Restrict)):
                    self.reject("GIVEN holds facts, rules and constraints only", token)
                given.append(statement)
            self.advance()
        self.expect(WORD, "EXPECT", "EXPECT")
        self.expect(PUNCT, "{", "'{' after EXPECT")
        expectations: list[Expectation] = []
        while not self.accept(PUNCT, "}"):
            expectations.append(self.expectation())
        self.expect(PUNCT, "}", "'}' closing the test")
        return Test(
            keyword.line, keyword.column, name.value, tuple(given), tuple(expectations)
        )

    def expectation(self) -> Expectation:
        token = self.peek()
        kind = _EXPECTATIONS.get(token.text) if token.kind == WORD else None
        if kind is None:
            self.fail("expected PROVABLE, NOT_PROVABLE, COUNT or '}'")
        self.advance()
        goal = self.goal()
        count = None
        if kind == "count":
            number = self.peek()
            if not isinstance(number.value, int) or number.value < 0:
                self.fail("expected the number of answers, a whole number")
            count = number.value
            self.advance()
        self.end()
        return Expectation(kind, goal, token.line, token.column, count)

    # -- pieces ---------------------------------------------------------------------

    def end(self) -> None:
        """A terminator; optional before '}' and at the end of the script."""
        if self.peek().kind == PUNCT and self.peek().text in _TERMINATORS:
            self.advance()
            return
        if self.at(END) or (self.peek().kind == PUNCT and self.peek().text in _CLOSERS):
            return
        self.fail("expected '.' or ';' ending the statement")

    def variables(self) -> None:
        """``?x, ?y`` declared after FORALL or RESTRICT (informative only)."""
        if self.accept(VAR):
            while self.accept(PUNCT, ","):
                self.expect(VAR, None, "a variable")

    def scope(self) -> str | None:
        if not self.accept(PUNCT, "@"):
            return None
        token = self.peek()
        if token.kind not in (WORD, STRING, NUMBER):
            self.fail("expected a scope name after '@'")
        self.advance()
        return str(token.value) if token.kind == STRING else token.text

    def annotations(self) -> tuple[str | None, dict[str, Any]]:
        scope = self.scope()
        attributes: dict[str, Any] = {}
        if self.at(PUNCT, "{"):
            start = self.peek()
            value = self.json_value()
            assert isinstance(value, dict)
            for key in value:
                if key in RESERVED_ATTRIBUTES:
                    raise ParseError(
                        f"{key!r} is written in the statement itself, "
                        "not as an attribute",
                        start.line,
                        start.column,
                    )
            attributes = value
        return scope, attributes

    def goal(self) -> Atom:
        """The atom of a question: positive or explicitly negated, never NAF."""
        start = self.peek()
        atom = self.literal(braced=False)
        if atom.naf:
            self.reject(
                "a question cannot be negation as failure; ask the goal itself and "
                "look for no answers",
                start,
            )
        if atom.predicate in BUILTIN_NAMES:
            self.reject("a comparison cannot be asked on its own", start)
        return atom

    def fact_atom(
        self, atom: Atom, what: str, arg_tokens: list[Token], start: Token
    ) -> Atom:
        """``atom`` as a stored fact: no NAF, no comparison, no variable."""
        if atom.naf:
            self.reject(f"{what} cannot be negation as failure", start)
        if atom.predicate in BUILTIN_NAMES:
            self.reject(f"{what} cannot be a comparison", start)
        for value, token in zip(atom.args, arg_tokens, strict=True):
            if isinstance(value, str) and value.startswith("?"):
                self.reject(
                    f"{what} cannot hold the variable {value} (a question is written "
                    f"'?- {atom.predicate}(…).')",
                    token,
                )
        return atom

    def conjunction(self, *, braced: bool, closer: str | None) -> tuple[Atom, ...]:
        """Body literals separated by ',' (or AND), up to a terminator or ``closer``."""
        premises = [self.literal(braced=braced)]
        while self.accept(PUNCT, ",") or self.word("AND"):
            premises.append(self.literal(braced=braced))
        return tuple(premises)

    def literal(self, *, braced: bool) -> Atom:
        return self.literal_with_args(braced=braced)[0]

    def literal_with_args(self, *, braced: bool) -> tuple[Atom, list[Token]]:
        """An atom with an optional negation prefix, or a comparison."""
        prefix = self.peek()
        naf = negated = False
        if self.accept(PUNCT, "\\+") or self.word("NAF"):
            naf = True
        elif self.at(WORD, "not") and not self.at(PUNCT, "(", 1):
            self.advance()
            naf = True
        elif self.word("NOT"):
            naf, negated = braced, not braced
        elif self.accept(PUNCT, "-"):
            negated = True
        if self.at(OPERATOR, ahead=1) or (
            self.at(OPERATOR) and not self.at(PUNCT, "(", 1)
        ):
            if naf or negated:
                self.reject(
                    "a comparison cannot be negated; use the opposite comparison",
                    prefix,
                )
            return self.comparison()
        atom, arg_tokens = self.atom()
        return Atom(atom.predicate, atom.args, negated=negated, naf=naf), arg_tokens

    def comparison(self) -> tuple[Atom, list[Token]]:
        left_token = self.peek()
        left = self.term()
        operator = self.expect(OPERATOR, None, "a comparison operator (< > <= >= = !=)")
        right_token = self.peek()
        right = self.term()
        return Atom(operator.text, (left, right)), [left_token, right_token]

    def atom(self) -> tuple[Atom, list[Token]]:
        name = self.peek()
        printed_comparison = name.kind == OPERATOR and self.at(PUNCT, "(", 1)
        if name.kind == WORD or printed_comparison:  # `>(?x, 3)` as rules print
            predicate = name.text
        elif name.kind == STRING and isinstance(name.value, str) and name.value:
            predicate = name.value  # a predicate that is not a plain word
        else:
            self.fail("expected a predicate name")
        self.advance()
        args: list[Const] = []
        arg_tokens: list[Token] = []
        if self.accept(PUNCT, "(") and not self.accept(PUNCT, ")"):
            while True:
                arg_tokens.append(self.peek())
                args.append(self.term())
                if self.accept(PUNCT, ")"):
                    break
                self.expect(PUNCT, ",", f"',' or ')' in the arguments of {predicate}")
        return Atom(predicate, tuple(args)), arg_tokens

    def term(self) -> Const:
        token = self.peek()
        if token.kind in (VAR, WORD):
            self.advance()
            return token.text
        if token.kind == NUMBER:
            self.advance()
            assert isinstance(token.value, (int, float))
            return token.value
        if token.kind == STRING:
            assert isinstance(token.value, str)
            if token.value.startswith("?"):
                raise ParseError(
                    "a constant cannot start with '?' (that is how variables are "
                    "written)",
                    token.line,
                    token.column,
                )
            self.advance()
            return token.value
        self.fail("expected a variable, a name, a number or a quoted string")

    # -- attribute values: JSON, with bare words as keys --------------------------

    def json_value(self) -> Any:
        token = self.peek()
        if self.accept(PUNCT, "{"):
            found: dict[str, Any] = {}
            if self.accept(PUNCT, "}"):
                return found
            while True:
                key = self.peek()
                if key.kind not in (WORD, STRING):
                    self.fail("expected an attribute name")
                self.advance()
                if key.kind == WORD and ":" in key.text and not self.at(PUNCT, ":"):
                    self.reject(f"write a space after ':' in {key.text!r}", key)
                self.expect(PUNCT, ":", "':' after the attribute name")
                found[str(key.value)] = self.json_value()
                if self.accept(PUNCT, "}"):
                    return found
                self.expect(PUNCT, ",", "',' or '}' in the attributes")
        if self.accept(PUNCT, "["):
            items: list[Any] = []
            if self.accept(PUNCT, "]"):
                return items
            while True:
                items.append(self.json_value())
                if self.accept(PUNCT, "]"):
                    return items
                self.expect(PUNCT, ",", "',' or ']' in the list")
        if token.kind in (STRING, NUMBER):
            self.advance()
            return token.value
        if token.kind == WORD and token.text in _JSON_WORDS:
            self.advance()
            return _JSON_WORDS[token.text]
        self.fail("expected a value (a string, number, true, false, null, list or {…})")
