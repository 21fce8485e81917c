"""Version stamps that never repeat within a process.

A projection's version (a rule book's, the key table's) keys caches of what was
computed from it. Counting per object would hand out the same number twice when a
projection is replaced by another copy (a failed commit puts back the durable copy,
issue 14), and a cache would then serve what the lost version computed. Stamps from
one process-wide counter never meet again.
"""

from __future__ import annotations

import itertools

_STAMPS = itertools.count(1)


def next_stamp() -> int:
    """A number no earlier call returned (thread-safe: ``next`` on a count is atomic)."""
    return next(_STAMPS)
