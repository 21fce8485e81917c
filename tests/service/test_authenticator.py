"""Key verification: argon2 once per key, then a keyed-hash cache that never outlives a
revoke, a change or an expiry (issue 7)."""

from __future__ import annotations

import asyncio

import pytest

from nocturnus.errors import StartupError
from nocturnus.service import apikeys, authenticator
from nocturnus.service.apikeys import KeyChanges, KeyTable, NewKey, apply_key_event
from nocturnus.service.authenticator import ENV_ADMIN, Authenticator
from nocturnus.service.events import Event

NOW = 1_800_000_000_000


def mint(table: KeyTable, spec: NewKey) -> tuple[str, str]:
    key = apikeys.generate_key()
    events = apikeys.decide_create(table, spec, key=key, hashed=apikeys.hash_key(key),
                                   now=NOW, created_by="test")
    apply_all(table, events)
    return events[0].id, key  # type: ignore[attr-defined]


def apply_all(table: KeyTable, events: list[Event]) -> None:
    for event in events:
        apply_key_event(table, event)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = apikeys.verify_hash

    def verify(hashed: str, presented: str) -> bool:
        calls.append(presented[:12])
        return real(hashed, presented)

    monkeypatch.setattr(authenticator, "verify_hash", verify)
    return calls


def test_keys_have_the_documented_shape() -> None:
    key = apikeys.generate_key()
    assert key.startswith("nct_") and len(key) == 47
    assert apikeys.prefix_of(key) == key[:12]
    assert apikeys.prefix_of("nct_short") is None and apikeys.prefix_of("other_" + "x" * 40) is None
    hashed = apikeys.hash_key(key)
    assert hashed.startswith("$argon2id$") and key not in hashed
    assert apikeys.verify_hash(hashed, key) and not apikeys.verify_hash(hashed, key + "x")
    assert not apikeys.verify_hash("not a hash", key)


def test_argon2_runs_once_then_the_cache_answers(counted: list[str]) -> None:
    table = KeyTable()
    key_id, key = mint(table, NewKey("writer", ("production",), ("acme_corp",)))
    auth = Authenticator(lambda: table)

    async def run() -> None:
        first = await auth.authenticate(key, NOW)
        assert first is not None and first.key_id == key_id and first.role == "writer"
        assert first.databases == ("production",) and first.tenants == ("acme_corp",)
        for _ in range(5):
            assert await auth.authenticate(key, NOW) == first
        both = await asyncio.gather(auth.authenticate(key, NOW), auth.authenticate(key, NOW))
        assert both == [first, first]

    asyncio.run(run())
    assert counted == [key[:12]]
    assert all(len(digest) == 32 and key.encode() not in digest for digest in auth._cache)


def test_wrong_keys_fail_without_touching_other_records(counted: list[str]) -> None:
    table = KeyTable()
    _, key = mint(table, NewKey("reader"))
    auth = Authenticator(lambda: table)

    async def run() -> None:
        assert await auth.authenticate(key[:-1] + ("A" if key[-1] != "A" else "B"), NOW) is None
        assert await auth.authenticate(apikeys.generate_key(), NOW) is None  # unknown prefix
        assert await auth.authenticate("garbage", NOW) is None

    asyncio.run(run())
    assert len(counted) == 1  # only the key sharing a real prefix paid argon2


def test_revoke_patch_and_expiry_count_on_the_next_call() -> None:
    table = KeyTable()
    key_id, key = mint(table, NewKey("reader", expires_in_days=1))
    auth = Authenticator(lambda: table)

    async def run() -> None:
        assert (await auth.authenticate(key, NOW)).role == "reader"  # type: ignore[union-attr]
        apply_all(table, apikeys.decide_update(table, key_id, KeyChanges(role="writer", tenants=("a",))))
        changed = await auth.authenticate(key, NOW)
        assert changed is not None and changed.role == "writer" and changed.tenants == ("a",)
        apply_all(table, apikeys.decide_update(table, key_id, KeyChanges(enabled=False)))
        assert await auth.authenticate(key, NOW) is None
        apply_all(table, apikeys.decide_update(table, key_id, KeyChanges(enabled=True)))
        assert await auth.authenticate(key, NOW) is not None
        assert await auth.authenticate(key, NOW + apikeys.DAY_MS) is None  # expired
        assert await auth.authenticate(key, NOW + 1) is not None
        assert auth.current(changed, NOW) == changed
        apply_all(table, apikeys.decide_revoke(table, key_id, NOW, "test"))
        assert await auth.authenticate(key, NOW) is None
        assert auth.current(changed, NOW) is None
        assert key_id not in auth._digests_of

    asyncio.run(run())


def test_env_admin_key_is_recognised_and_must_be_long_enough() -> None:
    auth = Authenticator(KeyTable, "an-admin-key-of-some-length")

    async def run() -> None:
        assert await auth.authenticate("an-admin-key-of-some-length", NOW) is ENV_ADMIN
        assert await auth.authenticate("an-admin-key-of-some-lengtH", NOW) is None

    asyncio.run(run())
    with pytest.raises(StartupError, match="at least 16"):
        Authenticator(KeyTable, "short")


def test_decisions_validate() -> None:
    table = KeyTable()
    with pytest.raises(Exception, match="role"):
        apikeys.decide_create(table, NewKey("root"), key=apikeys.generate_key(), hashed="h",
                              now=NOW, created_by="t")
    with pytest.raises(Exception, match="not found"):
        apikeys.decide_revoke(table, "nope", NOW, "t")
    key_id, _ = mint(table, NewKey("reader", ("a", "a", "b")))
    assert table.get(key_id).databases == ("a", "b")  # type: ignore[union-attr]
    assert table.get(key_id).name == table.get(key_id).prefix  # type: ignore[union-attr]


def test_a_principal_resolved_earlier_is_reread_after_any_key_event() -> None:
    table = KeyTable()
    key_id, key = mint(table, NewKey("writer"))
    auth = Authenticator(lambda: table)
    principal = asyncio.run(auth.authenticate(key, NOW))
    assert principal is not None
    seen = auth.generation
    assert auth.current(principal, NOW, seen) is principal
    # revoked: the table changes at once, before anyone calls forget()
    apply_all(table, apikeys.decide_revoke(table, key_id, NOW, "test"))
    assert auth.generation != seen
    assert auth.current(principal, NOW, seen) is None
    _, expiring = mint(table, NewKey("reader", expires_in_days=1))
    short = asyncio.run(auth.authenticate(expiring, NOW))
    assert short is not None and short.expires_at == NOW + apikeys.DAY_MS
    assert auth.current(short, NOW + apikeys.DAY_MS, auth.generation) is None
