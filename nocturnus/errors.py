"""The project's exception hierarchy.

Every error a user can cause or meet carries a stable ``code`` (the envelope's ``code``
field) and an HTTP ``status``. ``nocturnus.api.errors`` is the only place that renders
them; lower layers raise them without knowing about HTTP.
"""

from __future__ import annotations

from typing import Any, ClassVar


class NocturnusError(Exception):
    """Base class: a message for humans plus optional machine-readable details."""

    code: ClassVar[str] = "INTERNAL_ERROR"
    status: ClassVar[int] = 500

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class ValidationError(NocturnusError):
    """A bad header, field, body or limit."""

    code = "VALIDATION_ERROR"
    status = 400

    def __init__(
        self, message: str, field: str | None = None, details: dict[str, Any] | None = None
    ) -> None:
        merged = dict(details or {})
        if field is not None:
            merged.setdefault("field", field)
        super().__init__(message, merged or None)


class AuthDisabled(ValidationError):
    """Key management asked of a server running with ``NOCTURNUS_AUTH=off``."""

    code = "AUTH_DISABLED"


class Unauthorized(NocturnusError):
    code = "UNAUTHORIZED"
    status = 401


class Forbidden(NocturnusError):
    code = "FORBIDDEN"
    status = 403


class NotFound(NocturnusError):
    code = "NOT_FOUND"
    status = 404


class MethodNotAllowed(NocturnusError):
    code = "METHOD_NOT_ALLOWED"
    status = 405


class Conflict(NocturnusError):
    code = "CONFLICT"
    status = 409


class PayloadTooLarge(NocturnusError):
    code = "PAYLOAD_TOO_LARGE"
    status = 413


class RateLimited(NocturnusError):
    code = "RATE_LIMITED"
    status = 429

    def __init__(
        self, message: str, retry_after_s: int, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message, details)
        self.retry_after_s = retry_after_s


class QueryBudgetExceeded(NocturnusError):
    """A question went past its budget (issue 13): rows derived, wall time or answers.

    ``details`` name the limit, its value and the setting that raises it. Nothing of
    the stopped evaluation is kept, so asking again with a larger budget (or a more
    selective goal, or a ``limit``) starts afresh.
    """

    code = "QUERY_BUDGET_EXCEEDED"
    status = 422


class Unavailable(NocturnusError):
    """Storage cannot take writes, or the server is shutting down."""

    code = "UNAVAILABLE"
    status = 503


class WriteContention(Unavailable):
    """Other writers kept changing a tenant between this write's decision and its
    append, every time it was decided again (issue 16): retry it (``Retry-After``)."""

    code = "WRITE_CONTENTION"
    status = 503
    retry_after_s = 1


class TenantDamaged(Unavailable):
    """A tenant's stored history is damaged (a record that fails its authentication
    tag, a data key removed without a deletion): its requests are refused until an
    operator restores it, every other tenant keeps serving (issue 14)."""

    code = "TENANT_DAMAGED"
    status = 503

    def __init__(self, database: str, tenant: str, seq: int, reason: str) -> None:
        super().__init__(
            f"tenant {tenant!r} of database {database!r} is damaged at seq {seq}: "
            f"{reason}; restore the database from a backup (see `nocturnus verify`)",
            {"database": database, "tenant": tenant, "seq": seq},
        )
        self.tenant = tenant
        self.seq = seq


class StartupError(NocturnusError):
    """The server or a CLI command cannot start; the CLI prints the message as one line."""

    code = "STARTUP_ERROR"
    status = 500
