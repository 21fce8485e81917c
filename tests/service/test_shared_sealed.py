"""Shared state holding tenant data (``service/shared.py``): sealed under the tenant's
data key, seen by another process of the store, gone with the tenant's incarnation.

Two Databases over one store stand in for two processes, on both backends.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from nocturnus.service import tenants
from nocturnus.service.commands import TellFact
from nocturnus.service.databases import Databases
from nocturnus.service.shared import shared_key
from tests.service.stores import close, databases

SPACE = "test-sealed"


async def opened(data_dir: Path, location: str) -> Databases:
    each = databases(data_dir, location)
    await each.open()
    return each




def test_sealed_values_cross_processes_and_die_with_the_tenant(
    tmp_path: Path, location: str
) -> None:
    async def scenario() -> None:
        first, second = (
            await opened(tmp_path, location),
            await opened(tmp_path, location),
        )
        a, b = first.get("default"), second.get("default")
        await tenants.tell(a, "acme", TellFact("p", ("secret-fact",)))
        key = shared_key("default", "acme", "session-1")
        version = await first.shared.put_sealed(
            a, "acme", SPACE, key, b"p(secret-fact)", ttl_s=60
        )
        assert version == 1
        assert await second.shared.get_sealed(b, "acme", SPACE, key) == (
            b"p(secret-fact)",
            1,
        )
        # the store holds ciphertext only
        raw = await second.shared.get(SPACE, key)
        assert raw is not None and b"secret-fact" not in raw.value
        # bound to its key: the same bytes under another key (or tenant) do not open
        other = shared_key("default", "acme", "session-2")
        await first.shared.put(SPACE, other, raw.value, ttl_s=60)
        assert await first.shared.get_sealed(a, "acme", SPACE, other) is None
        # compare-and-set through the sealed face
        assert (
            await second.shared.put_sealed(
                b, "acme", SPACE, key, b"v2", ttl_s=60, expect=2
            )
            is None
        )
        assert (
            await second.shared.put_sealed(
                b, "acme", SPACE, key, b"v2", ttl_s=60, expect=1
            )
            == 2
        )

        # deleted on one process, created again on the other: the former incarnation's
        # value reads as absent everywhere, though its row is still there
        await tenants.delete_tenant(a, "acme")
        await tenants.tell(b, "acme", TellFact("p", ("new",)))
        assert await second.shared.get(SPACE, key) is not None
        assert await second.shared.get_sealed(b, "acme", SPACE, key) is None
        assert await first.shared.get_sealed(a, "acme", SPACE, key) is None
        await close(second, first)

    asyncio.run(scenario())


def test_a_deleted_tenant_cannot_be_sealed_for(tmp_path: Path, location: str) -> None:
    async def scenario() -> None:
        databases = await opened(tmp_path, location)
        db = databases.get("default")
        await tenants.tell(db, "gone", TellFact("p", ("x",)))
        await tenants.delete_tenant(db, "gone")
        with pytest.raises(LookupError):
            await databases.shared.put_sealed(db, "gone", SPACE, "k", b"x", ttl_s=60)
        await close(databases)

    asyncio.run(scenario())
