"""The audit trail: security-relevant actions appended to the ``_system`` log.

Entries are ``audit_recorded`` events under the ``_audit`` tenant of ``_system``, so they
are encrypted and hash-chained like every other event, survive restarts and never slow
the start-up replay of the registry (which reads only database-level events). The trail
is history, not state: :func:`read` reads it back from the log in the writer's thread,
so no projection grows with it.

Failed authentications are sampled by :class:`FailureSampler` so that a flood of bad keys
cannot flood the log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nocturnus.service.codec import CODEC
from nocturnus.service.database import Database, now_ms
from nocturnus.service.events import AuditRecorded

AUDIT_TENANT = "_audit"
MAX_READ = 10_000


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One entry of the audit trail as ``GET /admin/audit`` lists it."""

    seq: int
    at: int
    action: str
    outcome: str
    actor: dict[str, Any]
    target: str | None
    details: dict[str, Any]


async def record(
    system: Database[Any],
    action: str,
    *,
    actor: dict[str, Any],
    outcome: str = "success",
    target: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Append one entry; returns once it is durable."""
    now = now_ms()
    event = AuditRecorded(action, outcome, actor, target, dict(details or {}))
    await system.commit(AUDIT_TENANT, [event], now)


async def read(
    system: Database[Any], *, since_ms: int = 0, after_seq: int = 0, limit: int = 1000
) -> list[AuditEntry]:
    """Entries at or after ``since_ms`` with a seq above ``after_seq``, oldest first."""
    limit = max(1, min(limit, MAX_READ))

    def collect(log: Any) -> list[AuditEntry]:
        found: list[AuditEntry] = []
        for rec in log.read(after_seq, tenant=AUDIT_TENANT):
            if rec.body is None or rec.ts_ms < since_ms:
                continue
            event = CODEC.decode(rec.kind, rec.body)
            assert isinstance(event, AuditRecorded)
            found.append(
                AuditEntry(
                    rec.seq, rec.ts_ms, event.action, event.outcome,
                    event.actor, event.target, event.details,
                )
            )
            if len(found) >= limit:
                break
        return found

    result: list[AuditEntry] = await system.read_log(collect)
    return result


@dataclass(slots=True)
class FailureSampler:
    """Lets through at most one failure entry per client per window, and ``per_window``
    in all; the rest are counted and reported with the next entry let through."""

    window_s: float = 60.0
    per_window: int = 60
    _window_start: float = 0.0
    _recorded: int = 0
    _seen: dict[str, int] = field(default_factory=dict)
    _suppressed: int = 0

    def admit(self, client: str, now_s: float) -> int | None:
        """None to skip this failure; else the number of failures suppressed before it."""
        if now_s - self._window_start >= self.window_s:
            self._window_start = now_s
            self._recorded = 0
            self._seen.clear()
        if client in self._seen or self._recorded >= self.per_window:
            self._seen[client] = self._seen.get(client, 0) + 1
            self._suppressed += 1
            return None
        self._seen[client] = 1
        self._recorded += 1
        suppressed, self._suppressed = self._suppressed, 0
        return suppressed
