"""Turning a presented API key into a :class:`Principal`, paying argon2 once per key.

The first time a key is presented it is checked with argon2id against the one record
whose public prefix it carries (in a thread: argon2 never runs on the event loop). After
that the key is recognised by a keyed hash of it under a random per-process secret
(BLAKE2b in keyed mode, a MAC like HMAC-SHA256 but about three times cheaper per request,
which matters for the per-request budget of issue 7), so the cache holds nothing that
could be replayed against another process or reversed into the key. A cached entry only names the key id: every request re-reads that key's live
record, so a revoke, a change of role or scope, or an expiry takes effect on the very
next request; revoking also drops the cache entries at once.

``NOCTURNUS_ADMIN_KEY`` is an admin key that is never stored: it is recognised by the
same keyed hash, compared in constant time.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from nocturnus.errors import StartupError
from nocturnus.service.apikeys import KeyRecord, KeyTable, prefix_of, verify_hash

ENV_KEY_ID = "env-admin"
MIN_ADMIN_KEY_CHARS = 16


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a key's id, role and database/tenant scope (empty = all)."""

    key_id: str | None
    name: str
    role: str
    databases: tuple[str, ...] = ()
    tenants: tuple[str, ...] = ()
    source: str = "key"  # "key", "env" or "anonymous"
    expires_at: int | None = None

    @property
    def is_scoped(self) -> bool:
        """Whether the key is limited to some databases or tenants."""
        return bool(self.databases or self.tenants)

    def allows_database(self, name: str) -> bool:
        """Whether the key may act on database ``name``."""
        return not self.databases or name in self.databases

    def allows_tenant(self, name: str) -> bool:
        """Whether the key may act on tenant ``name``."""
        return not self.tenants or name in self.tenants

    def covers(self, databases: tuple[str, ...], tenants: tuple[str, ...]) -> bool:
        """True when a key limited to ``databases``/``tenants`` stays inside this scope."""
        if self.databases and (not databases or not set(databases) <= set(self.databases)):
            return False
        return not (self.tenants and (not tenants or not set(tenants) <= set(self.tenants)))


ANONYMOUS = Principal(None, "anonymous", "admin", source="anonymous")
ENV_ADMIN = Principal(ENV_KEY_ID, "NOCTURNUS_ADMIN_KEY", "admin", source="env")


def principal_of(record: KeyRecord) -> Principal:
    """Who a stored key authenticates as."""
    return Principal(
        record.id, record.name, record.role, record.databases, record.tenants,
        expires_at=record.expires_at,
    )


class Authenticator:
    """Verifies presented keys against a :class:`KeyTable`, with a keyed-hash cache."""

    def __init__(
        self,
        table: Callable[[], KeyTable],
        admin_key: str | None = None,
        *,
        cache_size: int = 10_000,
    ) -> None:
        self._table = table
        self._mac = hashlib.blake2b(key=secrets.token_bytes(32), digest_size=32)
        self._cache: OrderedDict[bytes, str] = OrderedDict()
        self._cache_size = cache_size
        self._digests_of: dict[str, set[bytes]] = {}
        self._pending: dict[bytes, asyncio.Future[Principal | None]] = {}
        self._principals: dict[str, tuple[int, Principal]] = {}
        self.last_used: dict[str, int] = {}
        self._env_digest: bytes | None = None
        if admin_key is not None and admin_key.strip():
            if len(admin_key.strip()) < MIN_ADMIN_KEY_CHARS:
                raise StartupError(
                    f"NOCTURNUS_ADMIN_KEY must be at least {MIN_ADMIN_KEY_CHARS} characters"
                )
            self._env_digest = self.digest(admin_key.strip())

    @property
    def has_env_admin(self) -> bool:
        """Whether an admin key was given by setting (``NOCTURNUS_ADMIN_KEY``)."""
        return self._env_digest is not None

    def digest(self, presented: str) -> bytes:
        """The keyed hash a presented key is cached under (never the key itself)."""
        mac = self._mac.copy()  # the keyed state, without paying the key setup again
        mac.update(presented.encode())
        return mac.digest()

    def recognise(self, digest: bytes, now: int) -> Principal | None | Literal[False]:
        """The principal of an already verified key (the env key or a cached one), None
        when that key is no longer live, or False when it must be verified."""
        if self._env_digest is not None and hmac.compare_digest(digest, self._env_digest):
            return ENV_ADMIN
        key_id = self._cache.get(digest)
        if key_id is None:
            return False
        principal = self.current_key(key_id, now)
        if principal is None:
            self.forget(key_id)
        else:
            self.last_used[key_id] = now
        return principal

    async def authenticate(self, presented: str, now: int) -> Principal | None:
        """The principal ``presented`` stands for at ``now``, or None (unknown, revoked,
        disabled or expired)."""
        digest = self.digest(presented)
        known = self.recognise(digest, now)
        if known is not False:
            return known
        return await self.verify(presented, digest, now)

    async def verify(self, presented: str, digest: bytes, now: int) -> Principal | None:
        """Check a key seen for the first time with argon2 (in a thread), then cache it;
        concurrent first uses of one key share a single check."""
        pending = self._pending.get(digest)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Principal | None] = asyncio.get_running_loop().create_future()
        self._pending[digest] = future
        try:
            principal = await self._verify(presented, digest, now)
        except BaseException as e:
            future.set_exception(e)
            future.exception()  # retrieved: concurrent waiters re-raise it
            raise
        finally:
            del self._pending[digest]
        future.set_result(principal)
        return principal

    async def _verify(self, presented: str, digest: bytes, now: int) -> Principal | None:
        prefix = prefix_of(presented)
        if prefix is None:
            return None
        for record in self._table().candidates(prefix):
            if not record.is_live(now):
                continue
            if await asyncio.to_thread(verify_hash, record.hash, presented):
                # the key may have been revoked while argon2 ran
                principal = self.current_key(record.id, now)
                if principal is not None:
                    self._remember(digest, record.id)
                    self.last_used[record.id] = now
                return principal
        return None

    def _remember(self, digest: bytes, key_id: str) -> None:
        self._cache[digest] = key_id
        self._digests_of.setdefault(key_id, set()).add(digest)
        while len(self._cache) > self._cache_size:
            old_digest, old_id = self._cache.popitem(last=False)
            self._digests_of.get(old_id, set()).discard(old_digest)

    def current_key(self, key_id: str, now: int) -> Principal | None:
        """The live principal of key ``key_id`` (its current role and scope), or None."""
        table = self._table()
        known = self._principals.get(key_id)
        if known is not None and known[0] == table.version:
            # no key event since: the key is as it was (live), unless it has expired
            principal = known[1]
            if principal.expires_at is None or now < principal.expires_at:
                return principal
            return None
        record = table.get(key_id)
        if record is None or not record.is_live(now):
            return None
        principal = principal_of(record)
        self._principals[key_id] = (table.version, principal)
        return principal

    @property
    def generation(self) -> int:
        """Changes with every key event, so a principal resolved under an older one is
        re-read before it is trusted again."""
        return self._table().version

    def current(
        self, principal: Principal, now: int, generation: int | None = None
    ) -> Principal | None:
        """Re-read ``principal`` at ``now``: a key revoked or changed since counts at once.

        ``generation`` is :attr:`generation` when ``principal`` was resolved: while no key
        has been forgotten since and it has not expired, it is still current.
        """
        if principal.source != "key" or principal.key_id is None:
            return principal
        if generation == self.generation and (
            principal.expires_at is None or now < principal.expires_at
        ):
            return principal
        return self.current_key(principal.key_id, now)

    def forget(self, key_id: str) -> None:
        """Drop every cached verification of ``key_id`` (revoke, change, expiry)."""
        for digest in self._digests_of.pop(key_id, set()):
            self._cache.pop(digest, None)
        self._principals.pop(key_id, None)
