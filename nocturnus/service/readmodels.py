"""Per-tenant caches of the log that are not the projection: the ranking, cached windows.

None of it is an event or in a snapshot, and none of it changes an answer: each is a
function of the tenant's knowledge (use counts are knowledge, logged:
``TenantState.uses``), kept in memory next to the projection to be reused, and rebuilt
from the same knowledge by any process. (Context sessions and conversations' turns are
not here: every process must see them, so they are in the shared store,
``context/sessions.py``.)

A tenant's :class:`TenantReadModel` belongs to one projection object and one
incarnation of it, so it is gone (a fresh one is made on the next use) when the
projection is rebuilt after a failed commit, evicted under the memory budget
(:meth:`ReadModels.drop`: its ranking would keep the evicted projection in memory), or
when the tenant is deleted (``tenant_deleted`` bumps :attr:`TenantState.incarnation`).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nocturnus.service.projection import TenantState
from nocturnus.service.salience import Ranking

if TYPE_CHECKING:
    from nocturnus.service.context.window import Window, WindowRequest


@dataclass(slots=True)
class TenantReadModel:
    """What context windows keep per tenant between requests."""

    ranking: Ranking | None = None
    # windows are a function of (knowledge, rules, request): the last few are kept,
    # by request without its session id, for the knowledge generation they were
    # built in (see ``context.window.build_window``)
    windows: dict[WindowRequest, Window] = field(default_factory=dict)
    windows_generation: object = None


@dataclass(slots=True)
class _Held:
    state: weakref.ref[TenantState]
    incarnation: int
    model: TenantReadModel


class ReadModels:
    """The read models of one database's tenants (``Database.read_models``).

    Holds each projection weakly: a projection dropped from memory takes nothing of
    its read model's size with it into this map beyond the small entry, which the
    next use of that tenant replaces.
    """

    def __init__(self) -> None:
        self._held: dict[str, _Held] = {}

    def of(self, state: TenantState) -> TenantReadModel:
        """The read model of ``state``, as it is now (a fresh one after a reload or a
        deletion of the tenant)."""
        model = self.known(state)
        if model is None:
            model = TenantReadModel()
            self._held[state.name] = _Held(weakref.ref(state), state.incarnation, model)
        return model

    def known(self, state: TenantState) -> TenantReadModel | None:
        """The read model of ``state`` if one exists, without making one."""
        held = self._held.get(state.name)
        if (
            held is None
            or held.state() is not state
            or held.incarnation != state.incarnation
        ):
            return None
        return held.model

    def drop(self, tenant: str) -> None:
        """Forget the tenant's read model: its projection leaves memory (the ranking
        and the cached windows hold references into it)."""
        self._held.pop(tenant, None)
