"""Authentication, rate limits, CORS and the audit hooks of the HTTP server (API.md §8).

:func:`install` adds one request middleware that, for every routed request:

1. answers CORS preflights (:mod:`nocturnus.api.cors`);
2. lets public routes through (``/health*``, ``/openapi.json``, ``/auth/status``,
   ``/auth/bootstrap``, ``/llm.txt``, ``/.well-known/agent.json``, and ``/metrics``
   unless ``NOCTURNUS_METRICS_PUBLIC=0``), and everything when auth is off;
   a key presented to ``/health`` or a public ``/metrics`` is still checked (steps 3-5),
   since they show per-database figures to a key that may see them;
3. refuses a client address locked out after too many failed authentications (429);
4. authenticates the key (``X-API-Key``, else ``Authorization: Bearer``) → 401;
5. spends a token of the key's bucket (429, ``X-RateLimit-*`` headers);
   buckets and lockouts are kept in step across processes by
   :mod:`nocturnus.api.sharedlimits`, never on a request's path but a failure's;
6. checks the route's permission (403) — the endpoint layer then checks it again together
   with the database/tenant scope, for REST routes and MCP tools alike.

Keys and secrets never reach a log line: failures are logged and audited with the client
address and, at most, a key's public prefix.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from sanic import HTTPResponse, Request, Sanic

from nocturnus.api import permissions
from nocturnus.api.cors import Cors
from nocturnus.api.ratelimit import FailureLimiter, TokenBuckets
from nocturnus.api.sharedlimits import SharedLimits
from nocturnus.errors import RateLimited, StartupError, Unauthorized
from nocturnus.service import audit
from nocturnus.service.apikeys import KeyTable, prefix_of
from nocturnus.service.authenticator import ANONYMOUS, Authenticator, Principal
from nocturnus.service.database import now_ms
from nocturnus.settings import Settings

log = logging.getLogger("nocturnus.security")

MISSING_KEY = "API key required. Provide via X-API-Key header or Authorization: Bearer <key>"
INVALID_KEY = "Invalid, disabled, or expired API key"


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(settings: Settings) -> None:
    """Refuse to serve without auth anywhere but on loopback.

    :raises StartupError: auth off on a non-loopback host without ``allow_insecure``.
    """
    if settings.auth == "off" and not is_loopback(settings.host) and not settings.allow_insecure:
        raise StartupError(
            f"refusing to listen on {settings.host} with authentication off: set "
            "NOCTURNUS_AUTH=on (with NOCTURNUS_ADMIN_KEY or `nocturnus keys create --role "
            "admin`), listen on 127.0.0.1, or set NOCTURNUS_ALLOW_INSECURE=1 to accept the risk"
        )


def presented_key(request: Request) -> str | None:
    """The key a request presents: ``X-API-Key`` first, then ``Authorization: Bearer``."""
    value = request.headers.get("x-api-key", "").strip()
    if value:
        return value
    authorization = request.headers.get("authorization", "").strip()
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return None


class Security:
    """The security state of one server: keys, limits, CORS and audit sampling."""

    def __init__(self, settings: Settings) -> None:
        check_exposure(settings)
        self.settings = settings
        self.enabled = settings.auth == "on"
        self.system: Any = None  # the ``_system`` Database, once opened
        self.authenticator = Authenticator(
            self._key_table, settings.admin_key, max_checks=settings.auth_checks
        )
        self.buckets = TokenBuckets(
            {
                "reader": settings.rate_limit_reader_rpm,
                "writer": settings.rate_limit_writer_rpm,
                "admin": settings.rate_limit_admin_rpm,
            }
        )
        self.failures = FailureLimiter(
            settings.auth_failures_per_minute,
            float(settings.auth_lockout_s),
            max_in_flight=settings.auth_checks_per_client,
        )
        self.limits = SharedLimits(self.failures if self.enabled else None)
        if self.enabled and any(self.buckets.limits_rpm.values()):
            self.limits.track("req", self.buckets)
        self.failure_sampler = audit.FailureSampler()
        self.denial_sampler = audit.FailureSampler()
        self.cors = Cors(settings.cors_origins)
        self.trusted_proxies = frozenset(
            p.strip() for p in settings.trusted_proxies.split(",") if p.strip()
        )
        self._rules: dict[tuple[str, str], tuple[permissions.Rule, bool]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def _key_table(self) -> KeyTable:
        if self.system is None:
            return KeyTable()
        table: KeyTable = self.system.root.keys
        return table

    def attach(self, system: Any) -> None:
        """Use the opened ``_system`` database (its key table and audit trail)."""
        self.system = system
        if not self.enabled:
            log.info("authentication is off (NOCTURNUS_AUTH=off): loopback only")
        elif self.bootstrap_required():
            how = (
                "POST /auth/bootstrap (with NOCTURNUS_BOOTSTRAP_PASSWORD) to create the "
                "first admin key, or "
                if self.settings.bootstrap_password is not None
                else ""
            )
            log.warning(
                "authentication is on but no API key exists: %sset NOCTURNUS_ADMIN_KEY "
                "or run `nocturnus keys create --role admin` with the server stopped",
                how,
            )

    def bootstrap_required(self) -> bool:
        return (
            self.enabled
            and not self.authenticator.has_env_admin
            and self._key_table().count_live(now_ms()) == 0
        )

    def current(self, principal: Principal, generation: int | None = None) -> Principal | None:
        """``principal`` as it stands now (None once revoked, disabled or expired)."""
        if not self.enabled:
            return ANONYMOUS
        return self.authenticator.current(principal, now_ms(), generation)

    def client_address(self, request: Request) -> str:
        """The peer address; behind trusted proxies, the nearest untrusted hop of
        ``X-Forwarded-For`` (read from the right: entries left of it are whatever the
        client chose to send)."""
        peer = request.ip or "unknown"
        if peer not in self.trusted_proxies:
            return peer
        hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",")]
        for hop in reversed(hops):
            if hop and hop not in self.trusted_proxies:
                return hop[:64]
        return peer

    def _rule(self, request: Request) -> tuple[permissions.Rule, bool] | None:
        """The rule of the request's route and whether it needs a key; None: unrouted."""
        route = request.route
        if route is None:
            return None
        cache_key = (route.name, request.method)
        try:
            return self._rules[cache_key]
        except KeyError:
            rule = permissions.rule_for(request.method, route.uri)
            found = self._rules[cache_key] = (rule, not rule.is_public(self.settings))
            return found

    # -- middleware -----------------------------------------------------------------

    async def check_request(self, request: Request) -> HTTPResponse | None:
        if self.cors.is_preflight(request):
            return self.cors.preflight(request)
        if not self.enabled:
            return None
        found = self._rule(request)
        if found is None:
            return None
        rule, guarded = found
        if not guarded:
            # A public route answers more to a key that may see more (issue 14): a key
            # presented there is checked like anywhere else; without one, nothing is.
            if rule.detail is not None and presented_key(request) is not None:
                await self._authenticate(request)
            return None
        principal = await self._authenticate(request)
        if rule.unscoped or rule.permission not in permissions.permissions_of(principal.role):
            permissions.check_permission(principal, rule)  # raises the precise 403
        return None

    async def _authenticate(self, request: Request) -> Principal:
        """The request's principal, its quota spent; set on ``request.ctx``.

        :raises RateLimited: the client address is locked out, or the key's quota is
            spent.
        :raises Unauthorized: no key, or not a live one.
        """
        now_s = time.monotonic()
        if self.failures.has_entries:
            wait = self.failures.locked_for(self.client_address(request), now_s)
            if wait:
                raise RateLimited(
                    f"Too many failed authentications from this address; retry in {wait} s",
                    retry_after_s=wait,
                )
        presented = presented_key(request)
        if presented is None:
            raise Unauthorized(MISSING_KEY)
        # the common case (a key already verified) stays synchronous: no argon2, no await
        now = now_ms()
        digest = self.authenticator.digest(presented)
        principal = self.authenticator.recognise(digest, now)
        if principal is False:
            principal = await self._verify(request, presented, digest, now, now_s)
        if not isinstance(principal, Principal):
            client = self.client_address(request)
            locked = await self.limits.fail(client, now_s)
            self._record_failure(request, client, presented, locked, now_s)
            raise Unauthorized(INVALID_KEY)
        ctx = request.ctx
        ctx.principal = principal
        ctx.principal_generation = self.authenticator.generation
        quota = self.buckets.take(principal.key_id or principal.name, principal.role, now_s)
        ctx.quota = quota
        if quota is not None and not quota.allowed:
            raise RateLimited(
                f"Rate limit of {quota.limit} requests per minute exceeded for this key",
                retry_after_s=quota.retry_after_s,
                details={"limit": quota.limit},
            )
        return principal

    async def _verify(
        self, request: Request, presented: str, digest: bytes, now: int, now_s: float
    ) -> Principal | None:
        """Check a key not seen before with argon2, as one attempt of its client.

        Joining a check of the same key already running costs nothing and is not an
        attempt. Otherwise the client may have ``NOCTURNUS_AUTH_CHECKS_PER_CLIENT``
        checks in flight, and those count against its lockout (issue 14: 20 concurrent
        guesses with a known prefix all passed the lockout, 3.9 s of CPU, 458 MB).

        :raises RateLimited: the client has as many checks in flight as it may.
        """
        if self.authenticator.is_checking(digest):
            return await self.authenticator.verify(presented, digest, now)
        client = self.client_address(request)
        wait = self.failures.begin(client, now_s)
        if wait:
            raise RateLimited(
                "Too many key checks in flight from this address; retry in "
                f"{wait} s",
                retry_after_s=wait,
            )
        try:
            return await self.authenticator.verify(presented, digest, now)
        finally:
            self.failures.end(client)

    def sees_detail(self, request: Request) -> bool:
        """May this request see per-database figures (``Rule.detail``)? Always with
        auth off (loopback only, every caller is the admin); else only a key that
        holds the permission without limits (issue 14)."""
        if not self.enabled:
            return True
        principal = getattr(request.ctx, "principal", None)
        return permissions.sees_detail(principal)

    def decorate(self, request: Request, response: HTTPResponse) -> None:
        ctx = request.ctx
        quota = getattr(ctx, "quota", None)
        if quota is not None:
            headers = response.headers
            headers["X-RateLimit-Limit"] = str(quota.limit)
            headers["X-RateLimit-Remaining"] = str(quota.remaining)
            headers["X-RateLimit-Reset"] = str(quota.reset_s)
        if self.cors.enabled:
            self.cors.decorate(request, response)
        status = response.status
        if status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="nocturnus"'
        elif status == 403:
            principal = getattr(ctx, "principal", None)
            if principal is not None:
                self._record_denial(request, principal)

    # -- audit ----------------------------------------------------------------------

    def actor(self, request: Request, principal: Principal) -> dict[str, Any]:
        return {
            "keyId": principal.key_id,
            "name": principal.name,
            "role": principal.role,
            "client": self.client_address(request),
        }

    async def record(
        self,
        request: Request,
        principal: Principal,
        action: str,
        *,
        target: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Append an audit entry for a successful admin action (awaited: durable)."""
        if self.system is None:
            return
        await audit.record(
            self.system, action, actor=self.actor(request, principal),
            target=target, details=details,
        )

    def _record_failure(
        self, request: Request, client: str, presented: str, locked: bool, now_s: float
    ) -> None:
        suppressed = self.failure_sampler.admit(client, now_s)
        if locked:
            log.warning("client %s locked out for %s s", client, self.failures.lockout_s)
        if suppressed is None and not locked:
            return  # sampled out: neither logged nor audited, so a flood floods nothing
        log.warning("authentication failed from %s on %s %s", client, request.method, request.path)
        details: dict[str, Any] = {"method": request.method, "path": request.path[:200]}
        prefix = prefix_of(presented)
        if prefix is not None:
            details["keyPrefix"] = prefix
        if suppressed:
            details["suppressedBefore"] = suppressed
        if locked:
            details["lockoutSeconds"] = self.failures.lockout_s
        actor = {"keyId": None, "name": None, "role": None, "client": client}
        action = "auth_lockout" if locked else "auth_failed"
        self._spawn(
            audit.record(
                self.system, action, actor=actor, outcome="failure", details=details
            )
        )

    def _record_denial(self, request: Request, principal: Principal) -> None:
        suppressed = self.denial_sampler.admit(principal.key_id or principal.name, time.monotonic())
        if suppressed is None or self.system is None:
            return
        details: dict[str, Any] = {"method": request.method, "path": request.path[:200]}
        if suppressed:
            details["suppressedBefore"] = suppressed
        self._spawn(
            audit.record(
                self.system, "access_denied", actor=self.actor(request, principal),
                outcome="denied", details=details,
            )
        )

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        if self.system is None:
            coro.close()
            return
        task = asyncio.get_running_loop().create_task(self._quietly(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _quietly(coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except Exception:  # an audit write failing must not fail the request
            log.exception("could not append an audit entry")

    async def drain(self) -> None:
        """Wait for pending audit writes (before the databases close)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


RequestHook = Callable[[Request], Awaitable[HTTPResponse | None] | None]
ResponseHook = Callable[[Request, HTTPResponse], None]


def middleware(security: Security) -> tuple[RequestHook, ResponseHook]:
    """The security checks of a request and the headers of its response.

    The app factory runs them inside its own two middlewares (one Sanic middleware
    per phase costs less than one per concern on every request).
    """

    def authenticate(request: Request) -> Awaitable[HTTPResponse | None] | None:
        # Sanic awaits what a middleware returns only when it is awaitable: with auth
        # off, anything but a CORS preflight has nothing to check (check_request would
        # return None at once), so no coroutine is made for it.
        if not security.enabled and not Cors.is_preflight(request):
            return None
        return security.check_request(request)

    return authenticate, security.decorate


def install(app: Sanic, security: Security) -> None:
    """Add the security middleware to ``app`` on its own (tests, tools)."""
    authenticate, decorate = middleware(security)
    app.on_request(authenticate)
    app.on_response(decorate)


def security_of(request: Request) -> Security:
    sec: Security = request.app.ctx.security
    return sec
