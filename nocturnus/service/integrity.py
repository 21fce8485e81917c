"""What this process knows about the integrity of one database's log (issue 14).

The start-up check reads only the newest events of each log, so damage further back —
a row removed, a byte flipped in an old record, a data key set to NULL by hand — shows
only when the whole log is verified (:mod:`nocturnus.service.verification`, in the
background) or when a read meets it. Both end here: a tenant named by a record or key
problem is *damaged*, and its requests are answered ``503 TENANT_DAMAGED`` instead of
being served from a history that is not the one written (or failing with a 500);
every other tenant keeps serving. Damage never heals in a running process: it goes
away with a restore and a restart. ``/health`` and ``/metrics`` read this state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nocturnus.errors import TenantDamaged
from nocturnus.store.verify import VerifyReport

DATABASE_LEVEL = ""


@dataclass(slots=True)
class Integrity:
    """One database's verification state: what the last full verification found and
    which tenants are damaged (found by it or by a read)."""

    database: str
    # time.time() when the last verification finished (0.0: none yet)
    verified_at: float = 0.0
    # problems the last verification found, and the first of them as one line
    problems: int = 0
    summary: str = ""
    # why the last verification could not run (a storage error), else None
    error: str | None = None
    # tenant -> (first bad seq, why); "" for the database level
    damaged: dict[str, tuple[int, str]] = field(default_factory=dict)

    def mark(self, tenant: str, seq: int, reason: str) -> TenantDamaged:
        """Record damage found by a read; return the error that read answers."""
        known = self.damaged.get(tenant)
        if known is None or seq < known[0]:
            self.damaged[tenant] = (seq, reason)
        return self.refusal(tenant)

    def refusal(self, tenant: str) -> TenantDamaged:
        """The error a request for damaged ``tenant`` gets."""
        seq, reason = self.damaged[tenant]
        return TenantDamaged(self.database, tenant, seq, reason)

    def record(self, report: VerifyReport, at: float) -> list[str]:
        """Take in a finished verification; return the tenants newly found damaged."""
        self.verified_at = at
        self.error = None
        self.problems = len(report.problems)
        self.summary = (
            "" if report.ok else report.summary().removeprefix(f"{report.database}: ")
        )
        new = []
        for tenant, problem in report.damaged_tenants.items():
            if tenant not in self.damaged:
                new.append(tenant)
            self.mark(tenant, problem.seq, problem.message)
        return new

    def failed(self, message: str, at: float) -> None:
        """The verification could not run (the store failed): report it, keep the rest."""
        self.verified_at = at
        self.error = message

    @property
    def is_intact(self) -> bool:
        """No damage known and the last verification (if any) ran and found none."""
        return not (self.problems or self.damaged or self.error)

    @property
    def is_database_level_damaged(self) -> bool:
        """The database level is damaged: rules or keys every tenant shares."""
        return DATABASE_LEVEL in self.damaged
