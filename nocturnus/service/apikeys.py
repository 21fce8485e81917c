"""API keys: minted once, kept only as argon2id hashes in the ``_system`` log (API.md §8).

A key is ``nct_`` followed by the base64url of 32 random bytes. Its first
:data:`PREFIX_CHARS` characters are its public *prefix*: stored in the clear (inside the
encrypted log) so that a presented key is checked against the one record carrying that
prefix instead of against every hash. The key itself is returned once, at creation, and
never stored, logged or shown again.

Every change is an event (``key_created``, ``key_updated``, ``key_revoked``) at the
database level of ``_system``; :func:`apply_key_event` folds them into a :class:`KeyTable`,
the same at write time and at replay.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from nocturnus.errors import Forbidden, NotFound, ValidationError
from nocturnus.service.database import DATABASE_LEVEL, now_ms
from nocturnus.service.events import Event, KeyCreated, KeyRevoked, KeyUpdated
from nocturnus.service.retry import retried
from nocturnus.service.stamps import next_stamp

if TYPE_CHECKING:
    from nocturnus.service.database import Database

ROLES = ("reader", "writer", "admin")
KEY_PREFIX = "nct_"
PREFIX_CHARS = 12
DAY_MS = 86_400_000

# argon2-cffi's defaults are RFC 9106's second recommendation (argon2id, t=3, 64 MiB, p=4):
# ~0.1 s per hash, paid once per key per process thanks to the verification cache.
_HASHER = PasswordHasher()


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """What the server knows about one key: never the key, only its hash."""

    id: str
    name: str
    prefix: str
    hash: str = field(repr=False)
    role: str
    databases: tuple[str, ...]
    tenants: tuple[str, ...]
    description: str
    created_at: int
    created_by: str
    expires_at: int | None = None
    enabled: bool = True

    def is_live(self, now: int) -> bool:
        """Enabled and not expired at ``now`` (epoch ms)."""
        return self.enabled and (self.expires_at is None or now < self.expires_at)


@dataclass(slots=True)
class KeyTable:
    """Projection of the key events: live (not revoked) keys by id and by prefix."""

    by_id: dict[str, KeyRecord] = field(default_factory=dict)
    by_prefix: dict[str, list[str]] = field(default_factory=dict)
    revoked: set[str] = field(default_factory=set)
    # A new stamp at every key event: what was resolved before may be stale.
    version: int = 0

    def get(self, key_id: str) -> KeyRecord | None:
        """The key with this id, or None."""
        return self.by_id.get(key_id)

    def candidates(self, prefix: str) -> list[KeyRecord]:
        """The keys sharing the visible prefix of a presented key (its hash decides)."""
        return [self.by_id[i] for i in self.by_prefix.get(prefix, ()) if i in self.by_id]

    def count_live(self, now: int) -> int:
        """How many keys may authenticate at ``now``."""
        return sum(1 for r in self.by_id.values() if r.is_live(now))


def apply_key_event(table: KeyTable, event: Event) -> None:
    """Fold one key event into ``table``; other events are ignored."""
    if isinstance(event, (KeyCreated, KeyUpdated, KeyRevoked)):
        table.version = next_stamp()
    if isinstance(event, KeyCreated):
        table.by_id[event.id] = KeyRecord(
            id=event.id,
            name=event.name,
            prefix=event.prefix,
            hash=event.hash,
            role=event.role,
            databases=tuple(event.databases),
            tenants=tuple(event.tenants),
            description=event.description,
            created_at=event.created_at,
            created_by=event.created_by,
            expires_at=event.expires_at,
        )
        table.by_prefix.setdefault(event.prefix, []).append(event.id)
    elif isinstance(event, KeyUpdated):
        record = table.by_id.get(event.id)
        if record is None:
            return
        changes: dict[str, Any] = {
            name: value
            for name in ("enabled", "role", "databases", "tenants", "description")
            if (value := getattr(event, name)) is not None
        }
        table.by_id[event.id] = replace(record, **changes)
    elif isinstance(event, KeyRevoked):
        record = table.by_id.pop(event.id, None)
        table.revoked.add(event.id)
        if record is not None:
            ids = table.by_prefix.get(record.prefix, [])
            if event.id in ids:
                ids.remove(event.id)
            if not ids:
                table.by_prefix.pop(record.prefix, None)


# -- key material ---------------------------------------------------------------------

def generate_key() -> str:
    """A fresh key: ``nct_`` + base64url (no padding) of 32 random bytes."""
    raw = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    return KEY_PREFIX + raw


def prefix_of(presented: str) -> str | None:
    """The public prefix of a presented key, or None when it cannot be one of ours."""
    if not presented.startswith(KEY_PREFIX) or len(presented) < PREFIX_CHARS + 8:
        return None
    return presented[:PREFIX_CHARS]


def hash_key(key: str) -> str:
    """argon2id hash of ``key`` (blocking: ~0.1 s; call it in a thread)."""
    return _HASHER.hash(key)


def verify_hash(hashed: str, presented: str) -> bool:
    """True when ``presented`` matches ``hashed`` (blocking; call it in a thread)."""
    try:
        return _HASHER.verify(hashed, presented)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


# -- decisions ------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class NewKey:
    """What a caller asks for when minting a key."""

    role: str
    databases: tuple[str, ...] = ()
    tenants: tuple[str, ...] = ()
    description: str = ""
    name: str | None = None
    expires_in_days: int | None = None


@dataclass(frozen=True, slots=True)
class KeyChanges:
    """A ``PATCH /auth/keys/<id>``: each field that is not None replaces the key's."""

    enabled: bool | None = None
    role: str | None = None
    databases: tuple[str, ...] | None = None
    tenants: tuple[str, ...] | None = None
    description: str | None = None


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValidationError(f"role: must be one of {', '.join(ROLES)}", field="role")


def _unique(names: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


def decide_create(
    table: KeyTable, spec: NewKey, *, key: str, hashed: str, now: int, created_by: str
) -> list[Event]:
    """The event minting ``key`` (already hashed) as described by ``spec``."""
    _check_role(spec.role)
    key_id = str(uuid.uuid4())
    while key_id in table.by_id or key_id in table.revoked:
        key_id = str(uuid.uuid4())
    prefix = key[:PREFIX_CHARS]
    expires_at = None
    if spec.expires_in_days is not None:
        expires_at = now + spec.expires_in_days * DAY_MS
    return [
        KeyCreated(
            id=key_id,
            name=spec.name or prefix,
            prefix=prefix,
            hash=hashed,
            role=spec.role,
            databases=_unique(spec.databases),
            tenants=_unique(spec.tenants),
            description=spec.description,
            created_at=now,
            created_by=created_by,
            expires_at=expires_at,
        )
    ]


def _require(table: KeyTable, key_id: str) -> KeyRecord:
    record = table.get(key_id)
    if record is None:
        raise NotFound(f"API key '{key_id}' not found", {"id": key_id})
    return record


def decide_update(table: KeyTable, key_id: str, changes: KeyChanges) -> list[Event]:
    """:raises NotFound: no live key ``key_id``."""
    _require(table, key_id)
    if changes.role is not None:
        _check_role(changes.role)
    return [
        KeyUpdated(
            id=key_id,
            enabled=changes.enabled,
            role=changes.role,
            databases=None if changes.databases is None else _unique(changes.databases),
            tenants=None if changes.tenants is None else _unique(changes.tenants),
            description=changes.description,
        )
    ]


def decide_revoke(table: KeyTable, key_id: str, now: int, revoked_by: str) -> list[Event]:
    """:raises NotFound: no live key ``key_id``."""
    _require(table, key_id)
    return [KeyRevoked(id=key_id, revoked_at=now, revoked_by=revoked_by)]


# -- operations (REST and CLI call these) ---------------------------------------------

def _table(system: Database[Any]) -> KeyTable:
    table: KeyTable = system.root.keys
    return table


@retried
async def create_key(
    system: Database[Any], spec: NewKey, created_by: str, *, first: bool = False
) -> tuple[KeyRecord, str]:
    """Mint, hash and log a key; returns its record and the key (shown once).

    ``first`` (``POST /auth/bootstrap``) mints only while no live key exists. The check
    and the append happen with no ``await`` between them (the hash is made before), so
    of two bootstraps racing in one process only one mints a key; another process is
    refused by the log's expected position.

    :raises Forbidden: ``first`` and a live key exists already.
    """
    _check_role(spec.role)
    key = generate_key()
    hashed = await asyncio.to_thread(hash_key, key)
    await system.fresh()
    now = now_ms()
    table = _table(system)
    if first and table.count_live(now):
        raise Forbidden("Bootstrap is done: an API key exists already")
    events = decide_create(table, spec, key=key, hashed=hashed, now=now, created_by=created_by)
    await system.commit(DATABASE_LEVEL, events, now)
    created = events[0]
    assert isinstance(created, KeyCreated)  # decide_create logs the key_created first
    return _require(table, created.id), key


@retried
async def update_key(system: Database[Any], key_id: str, changes: KeyChanges) -> KeyRecord:
    """Change a key's attributes (``PATCH /auth/keys/<id>``).

    :raises NotFound: no such key.
    """
    await system.fresh()
    table = _table(system)
    now = now_ms()
    await system.commit(DATABASE_LEVEL, decide_update(table, key_id, changes), now)
    return _require(table, key_id)


@retried
async def revoke_key(system: Database[Any], key_id: str, revoked_by: str) -> KeyRecord:
    """Revoke a key for good; the record as it was before (``DELETE /auth/keys/<id>``).

    :raises NotFound: no such key.
    """
    await system.fresh()
    table = _table(system)
    record = _require(table, key_id)
    now = now_ms()
    await system.commit(DATABASE_LEVEL, decide_revoke(table, key_id, now, revoked_by), now)
    return record


def list_keys(system: Database[Any]) -> list[KeyRecord]:
    """Every key, oldest first (revoked ones included)."""
    return sorted(_table(system).by_id.values(), key=lambda r: (r.created_at, r.id))


def key_info(record: KeyRecord, last_used: Mapping[str, int] | None = None) -> dict[str, Any]:
    """A key as shown to admins: never its hash, never the key."""
    return {
        "id": record.id,
        "name": record.name,
        "prefix": record.prefix,
        "role": record.role,
        "databases": list(record.databases),
        "tenants": list(record.tenants),
        "description": record.description,
        "createdAt": record.created_at,
        "createdBy": record.created_by,
        "lastUsedAt": (last_used or {}).get(record.id),
        "expiresAt": record.expires_at,
        "enabled": record.enabled,
    }
