"""Terms: parsing, numeric meaning, ordering and interning that keeps types apart."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nocturnus.engine.terms import Interner, Var, numeric_value, parse_term, sort_key


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("?x", Var("x")),
        ("?long_name", Var("long_name")),
        ("alice", "alice"),
        ("500", "500"),
        (500, 500),
        (2.5, 2.5),
        ("", ""),
    ],
)
def test_parse_term(raw, expected):
    parsed = parse_term(raw)
    assert parsed == expected
    assert type(parsed) is type(expected)


def test_anonymous_variables_are_each_fresh():
    first, second, third = parse_term("?"), parse_term("?_"), parse_term("?")
    assert isinstance(first, Var) and isinstance(second, Var)
    assert len({first, second, third}) == 3
    assert all(v.is_anonymous and v.text() == "?_" for v in (first, second, third))
    assert not Var("_x").is_anonymous
    assert parse_term("?_1") != first


@pytest.mark.parametrize("bad", [True, False, None, [1], {"a": 1}])
def test_parse_term_rejects_non_constants(bad):
    with pytest.raises(TypeError):
        parse_term(bad)


@pytest.mark.parametrize(
    ("value", "number"),
    [
        (500, 500.0),
        (2.5, 2.5),
        ("500", 500.0),
        ("-2.5", -2.5),
        ("1e3", 1000.0),
        (".5", 0.5),
        ("abc", None),
        ("nan", None),
        ("inf", None),
        (" 5", None),
        ("1_000", None),
        ("", None),
    ],
)
def test_numeric_value(value, number):
    assert numeric_value(value) == number


def test_sort_key_orders_numbers_before_strings_and_int_before_float():
    values = ["b", 2.5, "500", 500.0, 500, "a", -1, 3]
    assert sorted(values, key=sort_key) == [-1, 2.5, 3, 500, 500.0, "500", "a", "b"]


def test_interner_keeps_500_500_0_and_string_500_apart():
    interner = Interner()
    ids = [interner.intern(v) for v in (500, 500.0, "500", -0.0, 0.0, 0)]
    assert len(set(ids)) == 6
    decoded = [interner.values[i] for i in ids]
    assert [type(v) for v in decoded] == [int, float, str, float, float, int]
    assert interner.lookup(500.0) == ids[1]
    assert interner.lookup(501) is None
    assert interner.intern_all((500, "500", 500.0)) == (ids[0], ids[2], ids[1])
    with pytest.raises(TypeError):
        interner.intern(True)  # type: ignore[arg-type]


constants = st.one_of(
    st.text(max_size=5),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
)


@given(st.lists(constants, max_size=30))
def test_interning_round_trips_exactly(values):
    interner = Interner()
    ids = interner.intern_all(tuple(values))
    decoded = interner.decode(ids)
    assert [(type(v), v) for v in decoded] == [(type(v), v) for v in values]
    assert len(set(ids)) == len({(type(v), repr(v)) for v in values})


@given(st.lists(constants, min_size=2, max_size=20))
def test_sort_key_is_a_total_order(values):
    ordered = sorted(values, key=sort_key)
    backwards = ordered.copy()
    backwards.reverse()
    assert sorted(backwards, key=sort_key) == ordered
    for a, b in itertools.pairwise(ordered):
        assert sort_key(a) <= sort_key(b)


# Issue 3 (replay speed): strings and ints share one table with a C-level fast path;
# 1, 1.0, True and "1" are equal or hash alike in Python and must never share an id.
@pytest.mark.parametrize(
    "order",
    list(itertools.permutations([1, 1.0, "1", 0, -0.0, 0.0])),
)
def test_mixed_ints_floats_and_strings_keep_their_ids_in_any_order(order):
    interner = Interner()
    ids = interner.intern_all(tuple(order))
    assert len(set(ids)) == len(order)
    for value, found in zip(order, ids):
        assert interner.intern(value) == found
        assert interner.lookup(value) == found
        assert type(interner.values[found]) is type(value)
    assert interner.intern_all(tuple(order)) == ids
    assert interner.lookup_all(tuple(order)) == ids
    # a known int in every position never answers for its float or string twin
    assert interner.lookup_all((1, 1.0)) == (interner.lookup(1), interner.lookup(1.0))
    assert interner.intern_all(("1", 1)) == (interner.lookup("1"), interner.lookup(1))


def test_floats_and_bools_never_take_a_known_ints_id():
    interner = Interner()
    one, zero = interner.intern_all((1, 0))
    assert interner.lookup_all((1.0,)) is None
    assert interner.lookup_all((1, 0.0)) is None
    two = interner.intern_all((1.0, 0.0))
    assert one not in two and zero not in two
    assert [type(interner.values[i]) for i in two] == [float, float]
    assert interner.has_floats
    for bad in ((True,), (1, True), (False, 0), ("x", None)):
        with pytest.raises(TypeError):
            interner.intern_all(bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            interner.lookup_all(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        interner.lookup(True)  # type: ignore[arg-type]


def test_str_and_int_subclasses_intern_as_their_plain_values():
    class Name(str):
        pass

    class Count(int):
        pass

    interner = Interner()
    plain = interner.intern_all(("a", 7))
    assert interner.intern_all((Name("a"), Count(7))) == plain
    assert interner.lookup_all((Name("a"), Count(7))) == plain


@given(st.lists(st.one_of(constants, st.booleans()), max_size=12))
def test_intern_all_equals_interning_one_by_one(values):
    one_by_one = Interner()
    together = Interner()
    if any(type(v) is bool for v in values):
        with pytest.raises(TypeError):
            together.intern_all(tuple(values))
        return
    expected = tuple(one_by_one.intern(v) for v in values)
    assert together.intern_all(tuple(values)) == expected
    assert together.lookup_all(tuple(values)) == expected
    assert together.intern_all(tuple(values)) == expected


@given(st.lists(st.lists(constants, max_size=4), max_size=8))
def test_canonical_rows_equals_canonical_of_each_row(rows):
    one_by_one = Interner()
    together = Interner()
    expected = [one_by_one.canonical(tuple(row)) for row in rows]
    found = together.canonical_rows(rows)
    assert [[(type(v), repr(v)) for v in row] for row in found] == [
        [(type(v), repr(v)) for v in row] for row in expected
    ]
    assert [(type(v), repr(v)) for v in together.values] == [
        (type(v), repr(v)) for v in one_by_one.values
    ]
    # equal constants come back as the one interned object
    again = together.canonical_rows(rows)
    assert all(a is b for x, y in zip(found, again) for a, b in zip(x, y))
