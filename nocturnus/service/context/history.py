"""Time travel: the facts a tenant knew at a past moment, rebuilt from its event log
(``POST /memory/recall``)."""

from __future__ import annotations

import asyncio
import contextlib

from nocturnus.engine.terms import Const, Var
from nocturnus.errors import ValidationError
from nocturnus.service import queries
from nocturnus.service.context.window import Db
from nocturnus.service.facts import FactRecord
from nocturnus.service.replay import replay_tenant
from nocturnus.store.record import LogRecord
from nocturnus.store.sealer import Sealer

MAX_TIMESTAMP_MS = 2**62


async def recall(
    db: Db,
    tenant: str,
    predicate: str,
    negated: bool,
    pattern: tuple[Var | Const, ...],
    scope: str | None,
    at_ms: int,
) -> list[FactRecord]:
    """The stored facts matching ``pattern`` as the tenant knew them at ``at_ms``.

    Folds the tenant's logged events up to the last one committed at or before
    ``at_ms`` (a prefix of the log, so always a state that really existed) through the
    same ``apply`` as replay, then matches the facts visible at ``at_ms``. Records of a
    deleted (crypto-shredded) tenant read back empty and are skipped, as in replay.

    :raises ValidationError: ``at_ms`` is negative or beyond any clock.
    """
    if not (0 <= at_ms < MAX_TIMESTAMP_MS):
        raise ValidationError("timestamp: out of range", field="timestamp")

    def read(log: Sealer) -> list[LogRecord]:
        prefix = []
        # Sealer.read is a generator (typed as an Iterator): closing it early ends
        # its cursor at once, in this thread.
        with contextlib.closing(log.read(tenant=tenant)) as records:  # type: ignore[type-var]
            for record in records:
                if record.ts_ms > at_ms:
                    break
                prefix.append(record)
        return prefix

    records = await db.read_log(read)

    def fold() -> list[FactRecord]:
        past = replay_tenant(tenant, records)
        past.refresh(at_ms)
        return queries.match(past, predicate, negated, pattern, scope)

    return await asyncio.to_thread(fold)
