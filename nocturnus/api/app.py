"""The Sanic application factory.

Nothing happens at import time: :func:`create_app` builds the app, and the databases are
opened in ``before_server_start`` and flushed and closed in ``after_server_stop``, which
Sanic runs after in-flight requests finished on SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sanic import HTTPResponse, Request, Sanic

from nocturnus.api import access, headers
from nocturnus.api import security as security_layer
from nocturnus.api.admin import admin
from nocturnus.api.auth import auth
from nocturnus.api.console import console
from nocturnus.api.console.assets import Asset
from nocturnus.api.context import context_api
from nocturnus.api.discovery import discovery
from nocturnus.api.dsl import dsl
from nocturnus.api.errors import render_error
from nocturnus.api.extraction import extraction_api
from nocturnus.api.feed import Feeds, feed_api
from nocturnus.api.health import health
from nocturnus.api.knowledge import knowledge
from nocturnus.api.mcp import McpState, mcp
from nocturnus.api.memory import memory_api
from nocturnus.api.metrics import Metrics, metrics
from nocturnus.api.openapi import build_document, openapi
from nocturnus.api.ratelimit import TokenBuckets
from nocturnus.api.scopes import scopes
from nocturnus.api.transactions import transactions_api
from nocturnus.engine.prepared import PlanCache
from nocturnus.service import residency
from nocturnus.service.backup import prune_backups
from nocturnus.service.database import now_ms
from nocturnus.service.databases import Databases
from nocturnus.service.datadir import open_store
from nocturnus.service.evaluation import Evaluator, Limits, share_the_gil
from nocturnus.service.extraction.extractor import Extractor
from nocturnus.service.extraction.provider import LlmConfig, provider_of
from nocturnus.service.shared import Shared
from nocturnus.service.transactions import SharedTransactions, TransactionStore
from nocturnus.service.verification import verify_every
from nocturnus.settings import Settings, load_settings
from nocturnus.store.crypto import load_master_key
from nocturnus.store.recorder import Store

PRUNE_EVERY_S = 86_400


@dataclass(slots=True)
class AppContext:
    """Typed ``app.ctx``: everything handlers may reach."""

    settings: Settings
    databases: Databases | None = None
    store: Store | None = None
    evaluator: Evaluator | None = None
    backup_pruner: asyncio.Task[None] | None = None
    verifier: asyncio.Task[None] | None = None
    # set when the server stops: a verification in progress gives up
    verifier_stop: threading.Event = field(default_factory=threading.Event)
    ready: bool = False
    openapi: dict[str, Any] = field(default_factory=dict)
    security: security_layer.Security | None = None
    mcp: McpState | None = None
    metrics: Metrics | None = None
    transactions: TransactionStore | None = None
    feeds: Feeds | None = None
    console_assets: dict[str, Asset] = field(default_factory=dict)
    extractor: Extractor | None = None
    llm_quotas: TokenBuckets | None = None


NocturnusApp = Sanic  # Sanic[Config, AppContext]


def create_app(settings: Settings | None = None, name: str = "nocturnus") -> NocturnusApp:
    settings = settings or load_settings()
    security = security_layer.Security(settings)  # refuses an exposed server without auth
    # Logging is configured once by the CLI (nocturnus.logs), not by Sanic.
    app = Sanic(
        name, ctx=AppContext(settings=settings, security=security), configure_logging=False
    )
    app.config.MOTD = False
    app.config.REQUEST_MAX_SIZE = settings.max_body_bytes
    app.config.FALLBACK_ERROR_FORMAT = "json"
    app.config.KEEP_ALIVE_TIMEOUT = 30
    app.error_handler.add(Exception, render_error)
    blueprints = (
        knowledge, dsl, scopes, admin, auth, health, metrics, openapi, context_api, mcp,
        console, transactions_api, memory_api, feed_api, discovery, extraction_api,
    )
    for blueprint in blueprints:
        app.blueprint(blueprint)
    app.ctx.transactions = SharedTransactions(
        lambda: shared_of(app), settings.transaction_timeout_ms, settings.transactions_per_key
    )
    app.ctx.feeds = Feeds(settings.feeds_per_key, settings.feed_keepalive_ms)
    app.ctx.openapi = build_document()
    app.ctx.metrics = Metrics(lambda: app.ctx.databases, lambda: app.ctx.mcp)
    # the LLM (issue 19): its SDK client holds no connection until the first call
    app.ctx.extractor = Extractor(
        provider_of(LlmConfig.of(settings)), settings.llm_max_tokens, app.ctx.metrics.observe_llm
    )
    if settings.llm_calls_per_minute:
        app.ctx.llm_quotas = TokenBuckets({"llm": settings.llm_calls_per_minute})
        security.limits.track("llm", app.ctx.llm_quotas)

    @app.before_server_start
    async def start_evaluators(app: Sanic) -> None:
        app.ctx.evaluator = Evaluator(
            Limits.of(
                settings.query_max_rows,
                settings.query_timeout_ms,
                settings.query_max_answers,
            ),
            settings.query_workers,
        )
        share_the_gil()

    @app.before_server_start
    async def open_databases(app: Sanic) -> None:
        started = time.perf_counter()
        master_key = load_master_key(settings.data_dir, settings.master_key)
        app.ctx.store = open_store(settings)
        databases = Databases(
            settings.data_dir,
            master_key,
            store=app.ctx.store,
            snapshot_every=settings.snapshot_every,
            uses_flush_ms=settings.uses_flush_ms,
            plans=PlanCache(settings.plan_cache_size, settings.plan_cache_per_tenant),
            evaluator=app.ctx.evaluator,
            residency=_residency(settings, app.ctx.transactions),
        )
        await databases.open()
        app.ctx.databases = databases
        security.attach(databases.system)
        security.limits.start(databases.shared)
        app.ctx.metrics.startup_seconds.set(time.perf_counter() - started)

    @app.after_server_start
    async def mark_ready(app: Sanic) -> None:
        # Sanic installs its SIGTERM/SIGINT handlers only after these listeners run:
        # reporting ready any earlier lets a prompt SIGTERM kill the process uncleanly.
        app.ctx.ready = True
        loop = asyncio.get_running_loop()
        app.ctx.backup_pruner = loop.create_task(_prune_backups_daily(settings))
        if settings.verify_interval_s > 0 and app.ctx.databases is not None:
            app.ctx.verifier = loop.create_task(
                verify_every(
                    app.ctx.databases, settings.verify_interval_s, app.ctx.verifier_stop
                )
            )

    @app.before_server_stop
    async def stop_pruning(app: Sanic) -> None:
        if app.ctx.backup_pruner is not None:
            app.ctx.backup_pruner.cancel()

    @app.before_server_stop
    async def stop_verifying(app: Sanic) -> None:
        app.ctx.verifier_stop.set()
        if app.ctx.verifier is not None:
            app.ctx.verifier.cancel()

    @app.before_server_stop
    async def end_feeds(app: Sanic) -> None:
        app.ctx.feeds.stop()

    @app.before_server_stop
    async def stop_sharing_limits(app: Sanic) -> None:
        await security.limits.stop()

    @app.after_server_stop
    async def close_llm(app: Sanic) -> None:
        if app.ctx.extractor.provider is not None:
            await app.ctx.extractor.provider.close()

    @app.after_server_stop
    async def close_databases(app: Sanic) -> None:
        app.ctx.ready = False
        await security.drain()
        if app.ctx.databases is not None:
            await app.ctx.databases.close()
        if app.ctx.store is not None:
            app.ctx.store.close()
        if app.ctx.evaluator is not None:
            app.ctx.evaluator.close()

    # Request ids: a random per-process prefix and a counter. Unique like uuid4 for
    # logs and clients, without an os.urandom syscall on every request (issue 3's
    # /tell throughput budget).
    prefix = uuid.uuid4().hex[:16]
    counter = itertools.count(1)

    def new_request_id() -> str:
        return f"{prefix}{next(counter):016x}"

    authenticate, decorate = security_layer.middleware(security)

    # One middleware per phase, plain functions: Sanic awaits a middleware's result
    # only when it is awaitable, so no coroutine is made per request unless the
    # security check needs one (auth on, or a CORS preflight).
    @app.on_request
    def before(request: Request) -> Awaitable[HTTPResponse | None] | None:
        if app.ctx.evaluator is not None:  # evaluation workers give way (issue 13)
            app.ctx.evaluator.busy()
        access.begin(request, new_request_id)
        headers.check_names(request)
        databases = app.ctx.databases
        if databases is not None and not databases.seems_fresh():
            return _refreshed(databases, authenticate, request)
        return authenticate(request)

    @app.on_response
    def after(request: Request, response: HTTPResponse) -> None:
        if app.ctx.evaluator is not None:
            app.ctx.evaluator.busy()
        decorate(request, response)
        headers = response.headers
        headers["X-Request-ID"] = access.finish(request, response, new_request_id)
        headers["X-Content-Type-Options"] = "nosniff"
        headers["X-Frame-Options"] = "DENY"

    # A request answering 20 000 goals builds ~100 000 short-lived objects; at
    # CPython's default gen-0 threshold (700) the collector runs ~150 times during
    # it, promoting the live answers and re-scanning them, which doubled /ask on
    # big answer sets (issue 4). Reference counting frees them either way.
    collector: dict[str, tuple[int, ...]] = {}

    @app.before_server_start
    async def raise_collector_threshold(app: Sanic) -> None:
        collector["threshold"] = gc.get_threshold()
        first, *older = collector["threshold"]
        gc.set_threshold(max(first, GC_GEN0_THRESHOLD), *older)

    @app.after_server_stop
    async def restore_collector_threshold(app: Sanic) -> None:
        if "threshold" in collector:
            gc.set_threshold(*collector.pop("threshold"))

    return app


GC_GEN0_THRESHOLD = 10_000


def shared_of(app: NocturnusApp) -> Shared:
    """The server's shared state store (open from ``open_databases`` on)."""
    databases = app.ctx.databases
    assert databases is not None, "the shared store is used before the server started"
    return databases.shared


def _residency(
    settings: Settings, transactions: TransactionStore | None
) -> residency.Residency | None:
    """The memory budget of this process (NOCTURNUS_MEMORY_BUDGET_MB); None when off.

    A tenant with an open transaction stays in memory: its view shares the projection.
    """
    if settings.memory_budget_mb <= 0:
        return None
    holds = transactions.holds if transactions is not None else (lambda db, tenant: False)
    return residency.Residency(settings.memory_budget_mb * 1024 * 1024, holds)


async def _refreshed(
    databases: Databases,
    authenticate: Callable[[Request], Awaitable[HTTPResponse | None] | None],
    request: Request,
) -> HTTPResponse | None:
    """Follow another process's changes to the registry and the keys, then
    authenticate: a key revoked or a database created on any node counts here at
    once (issue 16)."""
    await databases.refresh()
    checked = authenticate(request)
    return None if checked is None else await checked


async def _prune_backups_daily(settings: Settings) -> None:
    """Prune ``<data dir>/backups`` at start and once a day (NOCTURNUS_BACKUP_RETENTION),
    so a deleted tenant's key leaves them within the retention even when no new backup
    is taken."""
    while True:
        try:
            await asyncio.to_thread(
                prune_backups, settings.data_dir, settings.backup_retention, now_ms()
            )
        except OSError as e:  # the next day tries again; /health reports the disk
            logging.getLogger("nocturnus.service").warning("pruning backups failed: %s", e)
        await asyncio.sleep(PRUNE_EVERY_S)
