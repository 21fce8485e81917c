"""Every fact attribute travels with its fact on every path (issue 20).

Generic over ``facts.ATTRIBUTES``: an attribute added to ``FactTold`` and ``FactRecord``
is covered here without being named (its sample value is chosen by its type), so this
test holds the claim that such an attribute needs no other change to be logged,
replayed, snapshotted, forked, merged and staged.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest

from nocturnus.service import snapshot_format
from nocturnus.service.codec import CODEC
from nocturnus.service.events import Event, FactTold
from nocturnus.service.facts import ATTRIBUTES, FactKey, FactRecord
from nocturnus.service.projection import TenantState, apply
from nocturnus.service.replay import fold
from nocturnus.service.rulebook import Rulebook
from nocturnus.service.scopes import decide_fork, decide_merge

KEY = FactKey("main", "p", False, ("x", 1))
NOW = 2_500  # inside the window the sample attributes make


def sample(position: int, annotation: str) -> Any:
    """A value other than the default for an attribute of this type."""
    if annotation.startswith("int"):
        return 1_000 * (position + 1)  # createdAt 1000, validFrom 2000, until 3000, ...
    by_type = {"float | None": 0.25, "str | None": "s", "dict[str, Any]": {"k": [1]}}
    if annotation not in by_type:
        pytest.fail(f"add a sample value for attributes of type {annotation}")
    return by_type[annotation]


ATTRIBUTE_TYPES = {f.name: str(f.type) for f in dataclasses.fields(FactRecord)}
VALUES = tuple(sample(i, ATTRIBUTE_TYPES[name]) for i, name in enumerate(ATTRIBUTES))
TOLD = FactTold(KEY.predicate, KEY.args, KEY.negated, KEY.scope, *VALUES)


def applied(state: TenantState, events: list[Event]) -> TenantState:
    for event in events:
        apply(state, state.last_seq + 1, event)
    state.refresh(NOW)
    return state


def told() -> TenantState:
    return applied(TenantState("t"), [TOLD])


def attributes(state: TenantState, scope: str = "main") -> tuple[Any, ...]:
    key = KEY._replace(scope=scope)
    record = state.visible(key)
    assert record is not None, f"{key} not visible"
    return record.attributes()


def test_the_sample_fact_sets_every_attribute() -> None:
    defaults = FactRecord(KEY, 0, 0).attributes()[2:]
    assert all(v != d for v, d in zip(VALUES[2:], defaults, strict=True))


def test_a_decided_and_a_logged_fact_keep_every_attribute() -> None:
    assert attributes(told()) == VALUES
    replayed = TenantState("t")
    fold([(1, 0, "t", TOLD.kind, CODEC.encode(TOLD))], lambda _: replayed)
    replayed.refresh(NOW)
    assert attributes(replayed) == VALUES


def test_a_snapshot_and_a_staged_copy_keep_every_attribute() -> None:
    state = told()
    loaded = snapshot_format.decode("t", snapshot_format.encode(state))
    loaded.refresh(NOW)
    assert attributes(loaded) == VALUES
    assert attributes(state.staged_copy()) == VALUES


def test_a_fork_and_a_merge_keep_every_attribute() -> None:
    state = told()
    forked, _ = decide_fork(state, Rulebook(), "main", "side", NOW)
    applied(state, forked)
    assert attributes(state, "side") == VALUES
    merged, _ = decide_merge(state, "main", "other", "SOURCE_WINS", NOW)
    applied(state, merged)
    assert attributes(state, "other") == VALUES


def test_a_body_logged_before_the_newest_attribute_reads_it_at_its_default() -> None:
    body = orjson.loads(CODEC.encode(TOLD))
    del body[ATTRIBUTES[-1]]
    replayed = TenantState("t")
    fold([(1, 0, "t", TOLD.kind, orjson.dumps(body))], lambda _: replayed)
    replayed.refresh(NOW)
    default = FactRecord(KEY, 0, 0).attributes()[-1]
    assert attributes(replayed) == (*VALUES[:-1], default)
