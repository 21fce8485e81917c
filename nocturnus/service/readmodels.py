"""Per-tenant state that is not knowledge: use counts, the ranking, the last windows.

None of it is an event or in a snapshot: it lives in memory next to the projection and
goes with it. (Context sessions and conversations' turns are not here: every process
must see them, so they are in the shared store, ``context/sessions.py``.) A tenant's
:class:`TenantReadModel` belongs to one projection object and one incarnation of it,
so it is gone (a fresh one is made on the next use) when the projection is rebuilt
after a failed commit or when the tenant is deleted (``tenant_deleted`` bumps
:attr:`TenantState.incarnation`): nothing a deleted tenant's agents were shown or used
outlives its data.

An eviction under the memory budget (``residency.py``) is different: the tenant is only
out of memory for a while, and its windows must not change for it. :meth:`ReadModels.carry`
keeps the read model when the projection is dropped, and :meth:`ReadModels.adopt` hands
it to the reloaded projection — unless the log shows the tenant was deleted meanwhile,
or another process snapshotted it past the evicted position (then nothing proves the
incarnation is the same, and the model is dropped as after a deletion).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nocturnus.service.events import TenantDeleted
from nocturnus.service.projection import TenantState
from nocturnus.service.replay import TenantLog
from nocturnus.service.salience import Ranking, Usage, knowledge_key

if TYPE_CHECKING:
    from nocturnus.service.context.window import Window, WindowRequest


@dataclass(slots=True)
class TenantReadModel:
    """What context windows and diffs keep per tenant between requests."""

    usage: Usage = field(default_factory=Usage)
    ranking: Ranking | None = None
    # windows are a function of (knowledge, rules, request): the last few are kept,
    # by request without its session id, for the knowledge generation they were
    # built in (see ``context.window.build_window``)
    windows: dict[WindowRequest, Window] = field(default_factory=dict)
    windows_generation: object = None


@dataclass(frozen=True, slots=True)
class _Carried:
    """What the evicted projection was when its read model was set aside."""

    seq: int
    """Its log position."""
    folded: bool
    """Its pending uses were folded at its knowledge then (salience: pending uses
    count only from the next knowledge change on)."""
    next_change: int | None
    """Its next visibility change without an event (``TenantState.next_change``)."""


@dataclass(slots=True)
class _Held:
    state: weakref.ref[TenantState]
    incarnation: int
    model: TenantReadModel
    carried: _Carried | None = None


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

    def carry(self, state: TenantState) -> None:
        """Keep the read model of ``state``, about to be evicted, for its next load.

        Only the uses are kept: the ranking and the cached windows hold
        references into the evicted projection (they would keep it in memory), and
        :meth:`adopt` rebuilds them from the same knowledge and uses anyway.
        """
        model = self.known(state)
        if model is None:
            return
        folded = model.usage.folded_at == knowledge_key(state)
        self._held[state.name].carried = _Carried(
            state.last_seq, folded, state.next_change()
        )
        model.ranking = None
        model.windows.clear()
        model.windows_generation = None

    def adopt(self, state: TenantState, stored: TenantLog, now_ms: int) -> None:
        """Give a freshly loaded projection the read model carried over its eviction.

        ``stored`` is what the load read (snapshot + tail), ``now_ms`` an instant at or
        after the load's ``refresh``. Uses still pending stay pending unless the
        knowledge changed meanwhile, as they would have without the eviction.
        """
        held = self._held.get(state.name)
        if held is None or held.carried is None:
            return
        carried = held.carried
        if not _continues(stored, carried.seq):
            del self._held[state.name]
            return
        held.state, held.incarnation, held.carried = weakref.ref(state), state.incarnation, None
        model = held.model
        unchanged = state.last_seq == carried.seq and (
            carried.next_change is None or carried.next_change > now_ms
        )
        if carried.folded and unchanged:
            model.usage.folded_at = knowledge_key(state)


def _continues(stored: TenantLog, seq: int) -> bool:
    """Whether the load of ``stored`` continues the incarnation evicted at ``seq``:
    no newer snapshot (it could hide a deletion) and no deletion in the tail after it."""
    if stored.snapshot is not None and stored.snapshot[0] > seq:
        return False
    return not any(
        entry[0] > seq and entry[3] == TenantDeleted.kind for entry in stored.tail
    )
