"""Export one tenant's decrypted facts and rules as JSON lines, for migration.

One object per line: ``{"type": "fact", ...}`` in the shape of a ``POST /tell`` body
plus ``createdAt``, then ``{"type": "rule", ...}`` in the shape of a ``POST /teach``
body plus ``id`` and ``createdAt``. Every stored fact is exported, visible now or not
(a ``validFrom`` in the future, an expired ``ttl``), in a stable order.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from nocturnus.errors import NotFound
from nocturnus.service.datadir import open_log
from nocturnus.service.queries import fact_order
from nocturnus.service.replay import read_tenant, replay_tenant, restore_tenant
from nocturnus.service.snapshot import rule_event
from nocturnus.service.tenant import TenantState
from nocturnus.store.crypto import MasterKey
from nocturnus.store.recorder import Store

FORMATS = ("jsonl",)


def load_tenant(
    store: Store, key: MasterKey, database: str, tenant: str
) -> TenantState:
    """Rebuild one tenant (newest snapshot + tail) through a read-only connection.

    :raises NotFound: the tenant has no live data in ``database``.
    """
    with open_log(store, key, database) as event_log:
        if tenant not in event_log.tenants():
            raise NotFound(f"no tenant {tenant!r} in database {database!r}")
        stored = read_tenant(event_log, tenant)
        state = restore_tenant(tenant, stored)
        if state is None:
            state = replay_tenant(tenant, event_log.entries(tenant=tenant))
    return state


def tenant_lines(state: TenantState) -> Iterator[bytes]:
    """The export of ``state``: facts, then the tenant's own rules, one JSON per line."""
    records = [r for scoped in state.facts.values() for r in scoped.values()]
    records.sort(key=lambda r: fact_order(r.key))
    for r in records:
        key = r.key
        fact: dict[str, Any] = {
            "type": "fact",
            "predicate": key.predicate,
            "args": list(key.args),
            "negated": key.negated,
            "scope": key.scope,
            "confidence": r.confidence,
            "ttl": r.ttl,
            "validFrom": r.valid_from,
            "validUntil": r.valid_until,
            "metadata": r.metadata,
            "createdAt": r.created_at,
        }
        yield orjson.dumps(fact) + b"\n"
    for record in sorted(state.rules, key=lambda r: (r.created_at, r.rule.id)):
        event = rule_event(record)
        rule = {
            "type": "rule",
            "id": event.id,
            "head": {k: v for k, v in event.head.items() if k != "naf"},
            "body": list(event.body),
            "scope": event.scope,
            "confidence": event.confidence,
            "createdAt": event.created_at,
        }
        yield orjson.dumps(rule) + b"\n"
