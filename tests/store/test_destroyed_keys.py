"""A destroyed data key must be explained by the deletion that destroyed it (issue 14,
item 5): ``unexplained_keys`` over key rows and the deletion rows of a log."""

from __future__ import annotations

import pytest

from nocturnus.store.recorder import KeyRow
from nocturnus.store.verify import unexplained_keys


def key(key_id: int, tenant: str, created: int, destroyed: int | None) -> KeyRow:
    return KeyRow(key_id, tenant, None if destroyed is not None else b"wrapped", created, 0,
                  destroyed)


DATABASE_KEY = KeyRow(1, "", b"wrapped", 1, 0, None)


@pytest.mark.parametrize(
    ("keys", "deletions", "top", "flagged"),
    [
        # a live key, and a key its own deletion destroyed: nothing to say
        ([DATABASE_KEY, key(2, "a", 2, None), key(3, "b", 3, 9)], {9: "b"}, 9, []),
        # destroyed at a seq where no deletion row of its tenant is
        ([key(2, "a", 2, 5)], {}, 9, [(2, "no tenant deletion")]),
        ([key(2, "a", 2, 9)], {9: "b"}, 9, [(2, "no tenant deletion")]),
        # an earlier incarnation's deletion, before this key was made
        ([key(2, "a", 2, 4), key(3, "a", 6, 4)], {4: "a"}, 9, [(3, "before the key")]),
        # one deletion claimed by two keys
        ([key(2, "a", 2, 7), key(3, "a", 3, 7)], {7: "a"}, 9, [(3, "another key")]),
        # a database-level key is never destroyed
        ([KeyRow(1, "", None, 1, 0, 5)], {}, 9, [(1, "never destroyed")]),
        # destroyed after the walk's head: a deletion committed while verify ran
        ([key(2, "a", 2, 12)], {}, 9, []),
    ],
    ids=["explained", "no-row", "other-tenant", "before-key", "claimed-twice",
         "database-level", "later-head"],
)
def test_unexplained_keys(
    keys: list[KeyRow], deletions: dict[int, str], top: int, flagged: list[tuple[int, str]]
) -> None:
    found = list(unexplained_keys(keys, deletions, top))
    assert len(found) == len(flagged)
    for problem, (key_id, why) in zip(found, flagged, strict=True):
        assert problem.kind == "key" and f"data key {key_id}" in problem.message
        assert why in problem.message
