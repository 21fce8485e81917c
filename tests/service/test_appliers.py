"""The projection's appliers take an event's fields by name (issue 20): how the values
reach their parameters is generated from the dataclass's fields, never matched by
position by hand, and a mismatch fails when the applier is registered."""

from __future__ import annotations

from typing import Any

import pytest

from nocturnus.service.codec import CODEC
from nocturnus.service.events import FactRetracted, FactTold
from nocturnus.service.facts import FactKey, FactRecord
from nocturnus.service.projection import (
    APPLIERS,
    TenantState,
    applies,
    apply,
    apply_fields,
    reader,
)

TOLD = FactTold("p", ("x", 2.5), True, "side", 10, 20, 30, 40, 0.5, {"k": [1]})


def test_fact_told_reaches_its_applier_by_name_in_both_forms() -> None:
    # TenantState.tell names the key's fields in FactKey's order, not FactTold's
    read = reader("fact_told")(CODEC.encode(TOLD))
    assert list(read[:4]) == ["side", "p", True, ["x", 2.5]]
    logged, decided = TenantState("t"), TenantState("t")
    apply_fields(logged, 7, "fact_told", read)
    apply(decided, 7, TOLD)
    key = FactKey("side", "p", True, ("x", 2.5))
    for state in (logged, decided):
        assert state.last_seq == 7
        assert state.record(key) == FactRecord.from_event(TOLD)


def test_a_retraction_logged_or_decided_removes_the_fact() -> None:
    gone = FactRetracted("p", ("x", 2.5), True, "side")
    for state_of in (
        lambda s: apply_fields(s, 2, gone.kind, reader(gone.kind)(CODEC.encode(gone))),
        lambda s: apply(s, 2, gone),
    ):
        state = TenantState("t")
        apply(state, 1, TOLD)
        state_of(state)
        assert state.fact_count() == 0 and state.last_seq == 2


def _unknown_name(state: TenantState, predicate: str, *, args: Any) -> None: ...


def _no_rest(state: TenantState, scope: str, predicate: str) -> None: ...


def _stranger(state: TenantState, scope: str, colour: str, *rest: Any) -> None: ...


@pytest.mark.parametrize("applier", [_unknown_name, _no_rest, _stranger])
def test_an_applier_that_does_not_name_the_fields_is_refused(applier: Any) -> None:
    kinds = dict(APPLIERS)
    with pytest.raises(TypeError, match="does not take FactRetracted's fields"):
        applies(FactRetracted)(applier)
    assert APPLIERS == kinds  # nothing registered


def test_a_kind_has_one_applier() -> None:
    def again(state: TenantState, scope: str, *rest: Any) -> None: ...

    with pytest.raises(TypeError, match="already has an applier"):
        applies(FactRetracted)(again)
