"""Uses of stored facts, buffered per process until they are logged (issue 16).

Salience counts how often a fact was used (``salience.py``). Those counts are knowledge
of the log, not of a process: an ``/ask`` on one process must change the windows of
every process, and a restart must not forget it. So a use is first noted here, per
tenant, aggregated per fact (how many uses, the latest one), and then appended to the
tenant's log as ``facts_used`` events (``events.FactsUsed``), which every process folds
into its projection through the same ``apply`` as any event:

* in the same commit as this process's next write to the tenant, before that write's
  events (``Database.commit``): in one process the uses count from the next knowledge
  change on;
* within ``uses_flush_ms`` for a tenant that is not written meanwhile
  (``Database.flush_uses``, on a timer armed by the first use noted while none runs);
* when the database closes (a clean shutdown).

A crash loses the uses not appended yet: they were never acknowledged as knowledge.
"""

from __future__ import annotations

from collections.abc import Iterable

from nocturnus.service.events import MAX_USED_FACTS, FactsUsed
from nocturnus.service.facts import FactKey


class UseBuffer:
    """The uses a process noted and has not appended yet, per tenant of one database."""

    def __init__(self) -> None:
        # tenant -> fact -> [uses, last use in ms]
        self._tenants: dict[str, dict[FactKey, list[int]]] = {}

    def __bool__(self) -> bool:
        return bool(self._tenants)

    def record(self, tenant: str, keys: Iterable[FactKey], now_ms: int) -> bool:
        """Note one use of each fact at ``now_ms``; whether any was noted."""
        facts = self._tenants.get(tenant)
        noted = False
        for key in keys:
            if facts is None:
                facts = self._tenants[tenant] = {}
            entry = facts.get(key)
            if entry is None:
                facts[key] = [1, now_ms]
            else:
                entry[0] += 1
                entry[1] = max(entry[1], now_ms)
            noted = True
        return noted

    def tenants(self) -> list[str]:
        """The tenants with uses noted, sorted."""
        return sorted(self._tenants)

    def take(self, tenant: str) -> list[FactsUsed]:
        """The tenant's noted uses as events (at most ``MAX_USED_FACTS`` facts each),
        no longer noted here; none when there are none."""
        facts = self._tenants.pop(tenant, None)
        if not facts:
            return []
        rows = [
            (key.scope, key.predicate, key.negated, key.args, count, last_ms)
            for key, (count, last_ms) in facts.items()
        ]
        return [
            FactsUsed(facts=tuple(rows[i : i + MAX_USED_FACTS]))
            for i in range(0, len(rows), MAX_USED_FACTS)
        ]

    def give_back(self, tenant: str, events: Iterable[FactsUsed]) -> None:
        """Note again the uses of events :meth:`take` made that were not stored."""
        for event in events:
            for scope, predicate, negated, args, count, last_ms in event.facts:
                key = FactKey(scope, predicate, negated, args)
                facts = self._tenants.setdefault(tenant, {})
                entry = facts.get(key)
                if entry is None:
                    facts[key] = [count, last_ms]
                else:
                    entry[0] += count
                    entry[1] = max(entry[1], last_ms)

    def drop(self, tenant: str) -> None:
        """Forget the tenant's noted uses (it was deleted: they go with its data)."""
        self._tenants.pop(tenant, None)

    def clear(self) -> None:
        """Forget every tenant's noted uses (the database was deleted)."""
        self._tenants.clear()
