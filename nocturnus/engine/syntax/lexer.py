"""Tokens of the text syntax, each with the line and column where it starts.

The lexer knows only shapes: words, variables, numbers, quoted strings, punctuation and
comparison operators. Whether a word is a keyword, a predicate or a constant is the
parser's business. Comments (``%``, ``#`` or ``//`` to the end of the line) and
whitespace separate tokens and are dropped.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

WORD = "word"
VAR = "var"
NUMBER = "number"
STRING = "string"
PUNCT = "punct"
OPERATOR = "operator"
END = "end"

MAX_INT = 2**63 - 1
MIN_INT = -(2**63)

# A word is a run of letters, digits and "_", possibly joined by one of - . : / @ when a
# word character follows: `acme_corp`, `what-if`, `v1.2`, `user@example.com`.
# A "." that ends a statement is never followed by a word character.
_WORD = r"[A-Za-z0-9_]+(?:[-.:/@][A-Za-z0-9_]+)*"
_NUMBER = re.compile(r"-?(?:\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)")
_TOKEN = re.compile(
    r"""
    (?P<space>[ \t\r\f\v]+)
  | (?P<newline>\n)
  | (?P<comment>(?:%|\#|//)[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<unterminated>["'])
  | (?P<query>\?-)
  | (?P<var>\?[A-Za-z0-9_]*)
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?![A-Za-z0-9_]|[-.:/@][A-Za-z0-9_]))
  | (?P<negnumber>-\d[A-Za-z0-9_]*(?:[-.:/@][A-Za-z0-9_]+)*)
  | (?P<word>"""
    + _WORD
    + r""")
  | (?P<neck>:-(?!\d))
  | (?P<arrow><-|->)
  | (?P<operator><=|>=|!=|<|>|=)
  | (?P<punct>\\\+|[(),.;{}\[\]:@-])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class Token:
    """One token: its kind, its text as written, its value and where it starts."""

    kind: str
    text: str
    value: object
    line: int
    column: int


class ParseError(ValueError):
    """A script the parser cannot read, with the line and column of the problem."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"line {line}, column {column}: {message}")
        self.reason = message
        self.line = line
        self.column = column


def tokens(text: str) -> Iterator[Token]:
    """Split ``text`` into tokens, ending with one ``END`` token.

    :raises ParseError: an unexpected character, an unterminated string, a bad escape
        or an integer outside 64 bits.
    """
    line, line_start, at = 1, 0, 0
    length = len(text)
    while at < length:
        match = _TOKEN.match(text, at)
        column = at - line_start + 1
        if match is None:
            raise ParseError(f"unexpected character {text[at]!r}", line, column)
        kind = match.lastgroup
        raw = match.group()
        at = match.end()
        if kind == "newline":
            line, line_start = line + 1, at
        elif kind in ("space", "comment"):
            continue
        elif kind == "unterminated":
            raise ParseError("this string is not closed on its line", line, column)
        elif kind == "string":
            yield Token(STRING, raw, _unquote(raw, line, column), line, column)
        elif kind == "var":
            yield Token(VAR, raw, raw, line, column)
        elif kind in ("word", "number", "negnumber"):
            yield _word(raw, line, column)
        elif kind == "operator":
            yield Token(OPERATOR, raw, raw, line, column)
        else:  # punct, query, neck, arrow
            yield Token(PUNCT, raw, raw, line, column)
    yield Token(END, "", None, line, at - line_start + 1)


def _word(raw: str, line: int, column: int) -> Token:
    """A number when the whole word is one (``3``, ``-2.5``, ``1e3``), else a word."""
    if not _NUMBER.fullmatch(raw):
        if raw.startswith("-"):
            raise ParseError(f"{raw!r} is not a number; quote it", line, column)
        return Token(WORD, raw, raw, line, column)
    if "." in raw or "e" in raw or "E" in raw:
        number = float(raw)
        if math.isinf(number):
            raise ParseError(f"the number {raw} is too large", line, column)
        return Token(NUMBER, raw, number, line, column)
    value = int(raw)
    if not MIN_INT <= value <= MAX_INT:
        raise ParseError(
            f"the integer {raw} does not fit in 64 bits; quote it to keep it as text",
            line,
            column,
        )
    return Token(NUMBER, raw, value, line, column)


def _unquote(raw: str, line: int, column: int) -> str:
    """The text of a quoted string: JSON's escapes, and ``\\'`` in single quotes."""
    body = raw[1:-1]
    if raw[0] == "'":
        body = body.replace("\\'", "'").replace('"', '\\"')
    try:
        value = json.loads(f'"{body}"', strict=False)
    except json.JSONDecodeError as e:
        raise ParseError(f"bad escape in string: {e.msg}", line, column) from None
    assert isinstance(value, str)
    return value
