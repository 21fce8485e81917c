"""The live change feed (issue 18): ``GET /memory/events`` and ``GET /memory/stream``.

Server-sent events, one per change of the tenant (``service/feed.py``), ``id:`` being
the change's log position so that a client resumes with ``Last-Event-ID`` (or
``?since=``) exactly after what it saw. Without either, a feed starts at the present.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from sanic import Blueprint, Request

from nocturnus.api import permissions, render
from nocturnus.api.endpoint import Call, endpoint, principal_of
from nocturnus.api.schema import SCOPE_NAME, Schema
from nocturnus.errors import NocturnusError, RateLimited, ValidationError
from nocturnus.service import feed
from nocturnus.service.authenticator import ANONYMOUS
from nocturnus.service.events import (
    FactExpired,
    FactRetracted,
    FactTold,
    PrioritySet,
    RuleTaught,
)
from nocturnus.service.transactions import owner_of

feed_api = Blueprint("feed")

BATCH = 500
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
FEED_QUERY: dict[str, Schema] = {
    "predicate": {"type": "string", "pattern": r"^[^\s]{1,256}$"},
    "scope": {"type": "string", "pattern": SCOPE_NAME},
    "events": {"type": "string", "pattern": r"^[a-z_]+(,[a-z_]+)*$"},
    "since": {"type": "string", "pattern": r"^[0-9]{1,18}$"},
}


class Feeds:
    """``app.ctx.feeds``: open feed streams per key, and the signal that ends them all."""

    def __init__(self, per_key: int, keepalive_ms: int) -> None:
        self.per_key = per_key
        self.keepalive_s = keepalive_ms / 1000
        self.open: Counter[str] = Counter()
        self.stopping = asyncio.Event()

    def stop(self) -> None:
        """End every feed (the server stops): each sends its end and returns."""
        self.stopping.set()

    @contextmanager
    def opened(self, owner: str) -> Iterator[None]:
        """:raises RateLimited: the key already has ``per_key`` feeds open."""
        if self.open[owner] >= self.per_key:
            raise RateLimited(
                f"too many open feeds for this key (limit {self.per_key})",
                retry_after_s=max(1, int(self.keepalive_s)),
                details={"limit": self.per_key},
            )
        self.open[owner] += 1
        try:
            yield
        finally:
            self.open[owner] -= 1
            if not self.open[owner]:
                del self.open[owner]


def change_json(change: feed.Change, scheme: int) -> dict[str, Any]:
    """A change as the original renders it: ``{type, eventId, timestamp, …}``.

    Facts are rendered as every route renders them (``atom``), rules as their text
    (``rule``) with ``ruleId``; ``scheme`` 0 names types as ``/memory/events`` does,
    1 as ``/memory/stream``.
    """
    event = change.event
    data: dict[str, Any] = {
        "type": feed.CHANGE_TYPES[change.kind][scheme],
        "eventId": change.seq,
        "timestamp": change.ts_ms,
    }
    if isinstance(event, FactTold):
        atom = render.fact_atom(feed.fact_of(event))
        data["atom"] = atom
        if change.kind == "consolidation":
            data["fact"] = atom
            data["sourceCount"] = event.args[1]
    elif isinstance(event, (FactRetracted, FactExpired, PrioritySet)):
        key = feed.key_of(event)
        data["atom"] = {
            "predicate": key.predicate,
            "args": list(key.args),
            "negated": key.negated,
            "scope": key.scope,
        }
    elif isinstance(event, RuleTaught):
        rule = feed.rule_of(event)
        data["rule"] = rule.rule.text()
        data["ruleId"] = rule.rule.id
        data["scope"] = rule.scope
    data.update(feed.describe(change))
    if change.transaction is not None:
        data["transactionId"] = change.transaction
    return data


def _frame(change: feed.Change, scheme: int) -> bytes:
    data = orjson.dumps(change_json(change, scheme))
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (
        change.seq,
        feed.CHANGE_TYPES[change.kind][scheme].encode(),
        data,
    )


def _start(request: Request, query: dict[str, str], head: int) -> int:
    """The position to resume after: ``Last-Event-ID``, else ``since``, else now."""
    last = request.headers.get("Last-Event-ID")
    if last is not None:
        if not last.strip().isdigit() or len(last.strip()) > 18:
            raise ValidationError(
                "Last-Event-ID: must be a log position (a non-negative integer)",
                field="Last-Event-ID",
            )
        return int(last.strip())
    if "since" in query:
        return int(query["since"])
    return head


def _filter(query: dict[str, str]) -> feed.Filter:
    types = None
    if "events" in query:
        types = frozenset(query["events"].split(","))
        unknown = sorted(types - feed.NAMES)
        if unknown:
            raise ValidationError(
                f"events: unknown type {', '.join(unknown)} (known: "
                f"{', '.join(sorted(feed.NAMES))})",
                field="events",
            )
    return feed.Filter(query.get("predicate"), query.get("scope"), types)


@endpoint(
    feed_api,
    "GET",
    "/memory/events",
    "/memory/stream",
    summary="Live change feed of the tenant (server-sent events, resumable)",
    tenant=True,
    query=FEED_QUERY,
    transactional=False,
    pins_tenant=False,
    response_type="text/event-stream",
)
async def events(call: Call) -> None:
    request = call.request
    db, tenant = call.database, call.tenant_id
    scheme = 1 if request.path.rstrip("/").endswith("/stream") else 0
    chosen = _filter(call.query)
    position = _start(request, call.query, db.head)
    feeds: Feeds = request.app.ctx.feeds
    rule = permissions.rule_for("GET", "/memory/events")
    with feeds.opened(owner_of(call.principal)):
        response = await request.respond(
            content_type="text/event-stream", headers=SSE_HEADERS
        )
        await response.send(b": feed open at %d\n\n" % position)
        waiter: asyncio.Future[None] | None = None
        stop = asyncio.ensure_future(feeds.stopping.wait())
        try:
            while not feeds.stopping.is_set():
                if waiter is None or waiter.done():
                    waiter = db.next_commit()  # before reading: no commit slips by
                page = await feed.read_after(db, tenant, position, BATCH)
                for seq, ts_ms, event in page.events:
                    for change in feed.changes_of(seq, ts_ms, event):
                        if chosen.admits(change):
                            await response.send(_frame(change, scheme))
                position = page.position
                if not _still_allowed(request, rule, db.name, tenant):
                    break
                if page.full:
                    continue
                wakers: set[asyncio.Future[Any]] = {waiter, stop}
                done, _ = await asyncio.wait(
                    wakers, timeout=feeds.keepalive_s, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    await response.send(b": keepalive\n\n")
            await response.eof()
        finally:
            stop.cancel()


def _still_allowed(
    request: Request, rule: permissions.Rule, database: str, tenant: str
) -> bool:
    """Whether the key that opened the feed may still read it (revoked, re-scoped...)."""
    try:
        principal = principal_of(request)
        if principal is not ANONYMOUS:
            permissions.authorize(principal, rule, database=database, tenant=tenant)
    except NocturnusError:
        return False
    return True
