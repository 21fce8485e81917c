"""Terms of the logic language: constants, variables, their order and interning.

Constants are JSON strings and numbers and must come back exactly as they were sent:
``500`` (int), ``500.0`` (float) and ``"500"`` (str) are three different constants.
Python treats ``500 == 500.0`` with equal hashes, so a plain ``set`` or ``dict`` of
constants would silently merge them; every structure in the engine therefore works on
interned integer ids whose keys keep the type apart (:class:`Interner`).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

Const = str | int | float
"""A constant: a JSON string or number. ``bool`` is not a constant."""

_ANONYMOUS_PREFIX = "_?"
_anonymous_ids = itertools.count(1)

# Strict decimal syntax: Python's float() also accepts "nan", "inf", "1_000" and
# surrounding spaces, none of which a user means as a number in a comparison.
_NUMBER_START = frozenset("+-.0123456789")
_NUMERIC = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


@dataclass(frozen=True, slots=True)
class Var:
    """A logic variable, written ``?name`` in the API.

    Anonymous variables (``?`` and ``?_``) get names starting with ``_?`` that no
    parsed ``?name`` can produce, so each occurrence is distinct from every other.
    """

    name: str

    @property
    def is_anonymous(self) -> bool:
        """Whether this variable stands for an anonymous ``?``/``?_`` occurrence."""
        return self.name.startswith(_ANONYMOUS_PREFIX)

    def text(self) -> str:
        """Render the variable as the API spells it."""
        return "?_" if self.is_anonymous else "?" + self.name


Term = Var | Const


def fresh_var() -> Var:
    """Return a variable distinct from every parsed and every other fresh variable."""
    return Var(f"{_ANONYMOUS_PREFIX}{next(_anonymous_ids)}")


def is_const(value: object) -> bool:
    """Tell whether ``value`` is an acceptable constant (str, int or float, not bool)."""
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def parse_term(value: Const) -> Var | Const:
    """Turn an API argument into a term: ``"?x"`` is a variable, the rest constants.

    ``"?"`` and ``"?_"`` are anonymous: every occurrence becomes a fresh variable.

    :raises TypeError: for values that are not JSON strings or numbers (``bool``
        included, since ``True == 1`` would otherwise alias the number one).
    """
    if not is_const(value):
        raise TypeError(
            f"a term must be a string or number, not {type(value).__name__}"
        )
    if isinstance(value, str) and value.startswith("?"):
        name = value[1:]
        if name in ("", "_"):
            return fresh_var()
        return Var(name)
    return value


def numeric_value(value: Const) -> float | None:
    """Return the number a constant stands for in comparisons, or ``None``.

    Numbers are themselves; strings count when they are plain decimal numbers
    (``"500"``, ``"2.5"``, ``"-1e3"``) because clients often send numbers as text.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if (
        isinstance(value, str)
        and value
        and value[0] in _NUMBER_START  # cheap reject: most names start with a letter
        and _NUMERIC.fullmatch(value)
    ):
        return float(value)
    return None


def sort_key(value: Const) -> tuple[int, float | str, int]:
    """Return a key giving a deterministic total order over constants.

    Numbers come first, by numeric value and then int before float (so ``500`` sorts
    just before ``500.0``); strings follow in code-point order. Python compares ints
    and floats exactly, so large ints keep their order too.
    """
    if isinstance(value, str):
        return (1, value, 0)
    return (0, value, 1 if isinstance(value, float) else 0)


def const_key(value: Const) -> object:
    """Return a hashable key that keeps ints, floats and strings apart.

    Strings and ints are their own keys (they never compare equal to each other);
    floats are keyed by their exact hex form, which also keeps ``-0.0`` apart from
    ``0.0`` so both echo back as sent.

    :raises TypeError: for anything that is not a constant (``bool`` included).
    """
    kind = type(value)
    if kind is str or kind is int:
        return value
    if isinstance(value, float) and kind is float:
        return ("f", value.hex())
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise TypeError(f"a constant must be a string or number, not {value!r}")
    if isinstance(value, str):
        return str(value)
    return int(value) if isinstance(value, int) else ("f", float(value).hex())


class Interner:
    """Maps constants to dense int ids and back, per engine instance.

    Ids are never reused or removed, so a fork of a :class:`FactIndex` can share its
    interner: ids stay valid on both sides. Alongside each value the interner keeps its
    numeric meaning, so comparison built-ins never re-parse strings in a join.

    Strings and ints live in one table, ``exact``: a string never equals an int, so
    both are their own keys there, and a row of them (the common case: names and
    numbers) interns with one C-level ``map`` over ``dict.get``. That table must
    never be asked about anything else, though: ``1.0`` and ``True`` are equal to
    ``1`` as dict keys. Floats (and the rest, see :func:`const_key`) live in
    ``_others`` under keys that keep them apart; every fast path checks that the row
    holds only exact ``str`` and ``int`` before trusting ``exact`` (issue 3).
    """

    __slots__ = ("_others", "exact", "has_floats", "numbers", "values")

    def __init__(self) -> None:
        self.exact: dict[str | int, int] = {}
        self._others: dict[object, int] = {}
        self.values: list[Const] = []
        self.numbers: list[float | None] = []
        self.has_floats = False  # no float ever seen: no 1 == 1.0 ambiguity to sort

    def __len__(self) -> int:
        return len(self.values)

    def _table_key(self, value: Const) -> tuple[dict[Any, int], object]:
        """(table, key) of ``value``: ``exact`` for strings and ints, else ``_others``.

        :raises TypeError: if ``value`` is not a constant.
        """
        kind = type(value)
        if kind is str or kind is int:
            return self.exact, value
        key = const_key(value)  # a str or int subclass: its plain value
        return (self.exact if type(key) in (str, int) else self._others), key

    def intern(self, value: Const) -> int:
        """Return the id of ``value``, assigning a new one on first sight.

        :raises TypeError: if ``value`` is not a constant.
        """
        kind = type(value)
        if kind is str or kind is int:
            exact_value: str | int = value  # type: ignore[assignment]  # exactly str or int
            found = self.exact.get(exact_value)
            if found is None:
                found = len(self.values)
                self._add_exact(exact_value, kind is int)
            return found
        table, key = self._table_key(value)
        found = table.get(key)
        if found is not None:
            return found
        new_id = len(self.values)
        if isinstance(value, float):
            self.has_floats = True
        self.values.append(value)
        self.numbers.append(numeric_value(value))
        table[key] = new_id
        return new_id

    def _add_exact(self, value: str | int, is_int: bool) -> None:
        """Give a new exact ``str`` or ``int`` the next id (as :meth:`intern` would).

        Only a string that may be a number asks :func:`numeric_value`. The id is
        published last, so an evaluation in another thread that finds it can read
        its value and number (the service's evaluations run in worker threads and only
        read an interner, while its event loop interns what writes bring).
        """
        new_id = len(self.values)
        self.values.append(value)
        self.numbers.append(
            float(value)  # numeric_value of an int
            if is_int
            else numeric_value(value)
            if value[:1] in _NUMBER_START  # type: ignore[index]  # value is a str here (is_int is False)
            else None
        )
        self.exact[value] = new_id

    def lookup(self, value: Const) -> int | None:
        """Return the id of ``value`` if it was ever interned, without adding it.

        :raises TypeError: if ``value`` is not a constant.
        """
        table, key = self._table_key(value)
        return table.get(key)

    def intern_all(self, values: tuple[Const, ...]) -> tuple[int, ...]:
        """Intern every value of a tuple, keeping positions.

        :raises TypeError: if a value is not a constant (the ones before it stay
            interned).
        """
        ids = tuple(map(self.exact.get, values))  # type: ignore[arg-type]  # a float or other key simply misses (None)
        if None not in ids:
            for value in values:  # a float or bool equal to a known int hit it too
                kind = type(value)
                if kind is not str and kind is not int:
                    break
            else:
                return ids  # type: ignore[return-value]  # no None among the ids (checked)
        intern = self.intern  # a new value, a float, or not a constant at all
        return tuple([intern(value) for value in values])

    def lookup_all(self, values: tuple[Const, ...]) -> tuple[int, ...] | None:
        """Return the ids of all values, or None if any was never interned.

        :raises TypeError: if a value is not a constant.
        """
        ids = tuple(map(self.exact.get, values))  # type: ignore[arg-type]  # a float or other key simply misses (None)
        if None not in ids:
            for value in values:  # as in intern_all
                kind = type(value)
                if kind is not str and kind is not int:
                    break
            else:
                return ids  # type: ignore[return-value]  # no None among the ids (checked)
        lookup = self.lookup
        found = tuple([lookup(value) for value in values])
        return None if None in found else found  # type: ignore[return-value]  # no None among the ids (checked)

    def canonical(self, values: Iterable[Const]) -> tuple[Const, ...]:
        """Return ``values`` as the interned objects equal to them, interning new ones.

        Equal constants told many times (each request parses its own strings) then
        share one object, wherever the caller keeps the result.

        :raises TypeError: if a value is not a constant.
        """
        # canonical_rows's loop for one row, inline: this runs once per told fact.
        exact = self.exact
        known_values = self.values
        found: list[Const] = []
        value: Any
        for value in values:
            kind = type(value)
            if kind is str or kind is int:
                known = exact.get(value)
                if known is None:
                    self._add_exact(value, kind is int)
                else:
                    value = known_values[known]
            else:
                value = known_values[self.intern(value)]
            found.append(value)
        return tuple(found)

    def canonical_rows(self, rows: Iterable[Iterable[Const]]) -> list[tuple[Const, ...]]:
        """:meth:`canonical` of each row, in order, in one loop (replay, snapshots).

        One pass per value: a known string or int becomes the interned object, a new
        one is interned as it is (as :meth:`intern` would), anything else goes
        through :meth:`intern`.

        :raises TypeError: if a value is not a constant (the ones before it stay
            interned).
        """
        exact = self.exact
        get = exact.get
        known_values = self.values
        add_exact = self._add_exact
        intern = self.intern
        found: list[tuple[Const, ...]] = []
        value: Any
        for row in rows:
            row_values: list[Const] = []
            for value in row:
                kind = type(value)
                if kind is str or kind is int:
                    known = get(value)
                    if known is None:
                        add_exact(value, kind is int)
                    else:
                        value = known_values[known]
                else:
                    value = known_values[intern(value)]
                row_values.append(value)
            found.append(tuple(row_values))
        return found

    def decode(self, ids: tuple[int, ...]) -> tuple[Const, ...]:
        """Turn a tuple of ids back into the constants exactly as they were sent."""
        return tuple(map(self.values.__getitem__, ids))
