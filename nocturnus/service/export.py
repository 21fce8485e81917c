"""Export one tenant's decrypted data: JSON lines for migration, or a SQLite file.

``jsonl``: one object per line, ``{"type": "fact", ...}`` in the shape of a ``POST
/tell`` body plus ``createdAt``, then ``{"type": "rule", ...}`` in the shape of a
``POST /teach`` body plus ``id`` and ``createdAt``.

``sqlite`` (:func:`export_sqlite`, written with sqlite-utils): plain tables ``facts``,
``rules``, ``scopes`` and ``events`` (the tenant's decrypted event log) in a new file
that Datasette, the ``sqlite3`` shell or any SQLite tool opens; JSON values (args,
metadata, rule literals, event bodies) are JSON text.

Every stored fact is exported, visible now or not (a ``validFrom`` in the future, an
expired ``ttl``), in a stable order. The output is plaintext: treat it like the data.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import orjson
import sqlite_utils

from nocturnus.errors import NotFound, ValidationError
from nocturnus.service.datadir import open_log
from nocturnus.service.facts import ATTRIBUTES, FactRecord
from nocturnus.service.formats import fact_text
from nocturnus.service.projection import TenantState
from nocturnus.service.queries import fact_order
from nocturnus.service.replay import read_tenant, replay_tenant, restore_tenant
from nocturnus.service.scopes import list_scopes
from nocturnus.service.snapshot_format import rule_event
from nocturnus.store.crypto import MasterKey
from nocturnus.store.record import RecordTuple
from nocturnus.store.recorder import Store
from nocturnus.store.sealer import Sealer

FORMATS = ("jsonl", "sqlite")


def load_tenant(
    store: Store, key: MasterKey, database: str, tenant: str
) -> TenantState:
    """Rebuild one tenant (newest snapshot + tail) through a read-only connection.

    :raises NotFound: the tenant has no live data in ``database``.
    """
    with open_log(store, key, database) as event_log:
        return _load(event_log, database, tenant)


def _load(event_log: Sealer, database: str, tenant: str) -> TenantState:
    if tenant not in event_log.tenants():
        raise NotFound(f"no tenant {tenant!r} in database {database!r}")
    state = restore_tenant(tenant, read_tenant(event_log, tenant))
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


@dataclass(frozen=True, slots=True)
class SqliteExport:
    """What :func:`export_sqlite` wrote: rows per table."""

    facts: int
    rules: int
    scopes: int
    events: int


def export_sqlite(
    store: Store, key: MasterKey, database: str, tenant: str, path: Path
) -> SqliteExport:
    """Write ``tenant``'s facts, rules, scopes and events to a new SQLite file at
    ``path`` (mode 0600; see the module docstring for the tables).

    :raises NotFound: the tenant has no live data in ``database``.
    :raises ValidationError: ``path`` exists already (an export never overwrites).
    """
    with open_log(store, key, database) as event_log:
        state = _load(event_log, database, tenant)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError as e:
            raise ValidationError(f"{path} exists: an export never overwrites") from e
        os.close(fd)
        out = sqlite_utils.Database(path)
        try:
            tables = {
                name: out.table(name).create(columns, pk=pk)
                for name, (columns, pk) in _tables().items()
            }
            tables["facts"].create_index(["scope", "predicate"])
            tables["facts"].insert_all(_fact_rows(state))
            tables["rules"].insert_all(_rule_rows(state))
            tables["scopes"].insert_all(
                {"name": s.name, "facts": s.facts, "rules": s.rules}
                for s in list_scopes(state)
            )
            tables["events"].insert_all(_event_rows(event_log.entries(tenant=tenant)))
            counts = {name: table.count for name, table in tables.items()}
            return SqliteExport(**counts)
        finally:
            out.close()


def _tables() -> dict[str, tuple[dict[str, type], str | None]]:
    """Each table's columns (JSON values as text) and primary key (None: rowid)."""
    hints = get_type_hints(FactRecord)
    attributes = {name: _column_type(hints[name]) for name in ATTRIBUTES}
    return {
        "facts": (
            {
                "scope": str,
                "predicate": str,
                "negated": int,
                "args": str,
                "text": str,
                **attributes,
            },
            None,
        ),
        "rules": (
            {
                "id": str,
                "text": str,
                "head": str,
                "body": str,
                "scope": str,
                "confidence": float,
                "created_at": int,
            },
            "id",
        ),
        "scopes": ({"name": str, "facts": int, "rules": int}, "name"),
        "events": ({"seq": int, "ts_ms": int, "kind": str, "body": str}, "seq"),
    }


def _column_type(hint: Any) -> type:
    """The SQLite column type of an attribute: its Python type without ``None``; a
    dict (metadata) is JSON text."""
    kinds = [k for k in get_args(hint) or (hint,) if k is not type(None)]
    kind = get_origin(kinds[0]) or kinds[0]
    return kind if kind in (int, float, str) else str


def _fact_rows(state: TenantState) -> Iterator[dict[str, Any]]:
    records = [r for scoped in state.facts.values() for r in scoped.values()]
    records.sort(key=lambda r: fact_order(r.key))
    for record in records:
        key = record.key
        yield {
            "scope": key.scope,
            "predicate": key.predicate,
            "negated": key.negated,
            "args": list(key.args),
            "text": fact_text(key),
            **dict(zip(ATTRIBUTES, record.attributes(), strict=True)),
        }


def _rule_rows(state: TenantState) -> Iterator[dict[str, Any]]:
    for record in sorted(state.rules, key=lambda r: (r.created_at, r.rule.id)):
        event = rule_event(record)
        yield {
            "id": event.id,
            "text": record.rule.text(),
            "head": event.head,
            "body": list(event.body),
            "scope": event.scope,
            "confidence": event.confidence,
            "created_at": event.created_at,
        }


def _event_rows(entries: Iterable[RecordTuple]) -> Iterator[dict[str, Any]]:
    """Each logged event as stored (a shredded one, of a deleted incarnation, with a
    null body)."""
    for seq, ts_ms, _, kind, body in entries:
        yield {
            "seq": seq,
            "ts_ms": ts_ms,
            "kind": kind,
            "body": None if body is None else body.decode(),
        }
