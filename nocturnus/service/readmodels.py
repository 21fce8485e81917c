"""Per-tenant state that is not knowledge: use counts, context sessions, the ranking.

None of it is an event or in a snapshot: it lives in memory next to the projection and
goes with it. A tenant's :class:`TenantReadModel` belongs to one projection object and
one incarnation of it, so it is gone (a fresh one is made on the next use) when the
projection is reloaded from the log (eviction, a failed commit) or when the tenant is
deleted (``tenant_deleted`` bumps :attr:`TenantState.incarnation`): nothing a deleted
tenant's agents were shown or used outlives its data.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nocturnus.service.context.sessions import Sessions
from nocturnus.service.projection import TenantState
from nocturnus.service.salience import Ranking, Usage

if TYPE_CHECKING:
    from nocturnus.service.context.window import Window, WindowRequest


@dataclass(slots=True)
class TenantReadModel:
    """What context windows and diffs keep per tenant between requests."""

    usage: Usage = field(default_factory=Usage)
    sessions: Sessions | None = None
    ranking: Ranking | None = None
    # windows are a function of (knowledge, rules, request): the last few are kept,
    # by request without its session id, for the knowledge generation they were
    # built in (see ``context.window.build_window``)
    windows: dict[WindowRequest, Window] = field(default_factory=dict)
    windows_generation: object = None
    # the last turns of each conversation of POST /context (issue 19): the next call's
    # hint, by session id, least recently used first
    turns: OrderedDict[str, tuple[str, ...]] = field(default_factory=OrderedDict)

    def sessions_of(self, capacity: int) -> Sessions:
        """The tenant's context sessions (an LRU of ``capacity``, made on first use)."""
        if self.sessions is None:
            self.sessions = Sessions(capacity)
        return self.sessions


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
