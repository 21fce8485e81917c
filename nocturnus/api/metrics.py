"""``GET /metrics``: Prometheus text, from one registry per app.

Request counters and latency histograms are recorded by the request middleware. Everything
about storage (events appended, group-commit batch sizes, commit/fsync time, writer state,
facts and tenants per database, replay and snapshot durations) is read at scrape time from
the stats the writers and databases keep anyway, so the hot path pays nothing extra for it
and databases created later are included without any wiring.

Labels stay low-cardinality: ``database`` (operator-created), route *templates* (never raw
paths), status and method. There is deliberately no tenant label. The ``database`` label
is shown only to a key that may see every database (``metrics_read`` without limits, or
anyone with auth off); everyone else gets the same metric names as server-wide figures
(sums, or the minimum/maximum where that is what an alert needs), with no database
name and no path (issue 14).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from sanic import Blueprint, HTTPResponse

from nocturnus import __version__
from nocturnus.api.endpoint import Call, endpoint, sees_detail
from nocturnus.store.distribution import SECONDS_BUCKETS, Distribution

if TYPE_CHECKING:
    from nocturnus.api.mcp import McpState
    from nocturnus.service.database import Database
    from nocturnus.service.databases import Databases
    from nocturnus.service.extraction.extractor import CallRecord

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
UNMATCHED = "<unmatched>"

metrics = Blueprint("metrics")


class Metrics:
    """The metrics of one app. Nothing global: tests may build several apps."""

    def __init__(
        self,
        databases: Callable[[], Databases | None],
        mcp: Callable[[], McpState | None] = lambda: None,
    ) -> None:
        self.startup_seconds = Gauge(
            "nocturnus_startup_duration_seconds",
            "Time the last start-up took to open every database and replay its root",
            registry=None,
        )
        info = Gauge(
            "nocturnus_build_info", "Always 1; the version as a label", ["version"],
            registry=None,
        )
        info.labels(__version__).set(1)
        self.requests = RequestStats()
        # LLM calls (issue 19): outcome, latency and tokens; never any content
        llm = ("provider", "operation")
        self.llm_calls = Counter(
            "nocturnus_llm_calls", "LLM calls by outcome (ok, invalid, or the error code)",
            [*llm, "outcome"], registry=None,
        )
        self.llm_seconds = Histogram(
            "nocturnus_llm_call_duration_seconds", "Time an LLM call took", list(llm),
            buckets=SECONDS_BUCKETS, registry=None,
        )
        self.llm_tokens = Counter(
            "nocturnus_llm_tokens", "Tokens LLM calls used, as the provider reported them",
            [*llm, "direction"], registry=None,
        )
        # Two views of the same figures: server-wide (anyone) and per database (a key
        # that may see every database's name, issue 14).
        self.registry = CollectorRegistry(auto_describe=False)
        self.public_registry = CollectorRegistry(auto_describe=False)
        for registry, per_database in ((self.registry, True), (self.public_registry, False)):
            for collector in (
                self.startup_seconds,
                info,
                RequestCollector(self.requests),
                StorageCollector(databases, per_database=per_database),
                ResidencyCollector(databases),
                McpCollector(mcp),
                self.llm_calls,
                self.llm_seconds,
                self.llm_tokens,
            ):
                registry.register(collector)

    def observe_request(self, method: str, route: str, status: int, seconds: float | None) -> None:
        self.requests.observe(method, route, status, seconds)

    def observe_llm(self, record: CallRecord) -> None:
        """Count one LLM call (the extraction service's observer)."""
        self.llm_calls.labels(record.provider, record.operation, record.outcome).inc()
        self.llm_seconds.labels(record.provider, record.operation).observe(record.seconds)
        tokens = self.llm_tokens
        tokens.labels(record.provider, record.operation, "input").inc(record.input_tokens)
        tokens.labels(record.provider, record.operation, "output").inc(record.output_tokens)

    def render(self, *, per_database: bool = True) -> bytes:
        return generate_latest(self.registry if per_database else self.public_registry)


def route_label(request: Any) -> str:
    """The route template (``/admin/databases/<db>``), never the raw path."""
    route = getattr(request, "route", None)
    if route is None:
        return UNMATCHED
    return _template(route.path)


@lru_cache(maxsize=1024)
def _template(path: str) -> str:
    """Sanic's ``admin/databases/<db:str>`` as declared: ``/admin/databases/<db>``."""
    return "/" + re.sub(r"<([A-Za-z_][A-Za-z0-9_]*):[^>]*>", r"<\1>", path.lstrip("/"))


def _histogram(family: HistogramMetricFamily, labels: list[str], dist: Distribution) -> None:
    buckets = [(floatToGoString(bound), count) for bound, count in dist.cumulative()]
    family.add_metric(labels, buckets, dist.total)


class RequestStats:
    """Requests answered and their latency, counted on the event loop.

    Every request lands here, so it is plain integer work: prometheus-client's labelled
    Counter and Histogram take a lock per increment (57 k instructions per request of
    a durable ``/tell``'s ~700 k, measured with ``benchmarks/tell_instructions.py``).
    Only the event loop records and only the loop scrapes, so nothing needs a lock;
    :class:`RequestCollector` publishes the figures at scrape time.
    """

    def __init__(self) -> None:
        # (method, route, status) -> [count], and (method, route) -> latency
        self.counts: dict[tuple[str, str, str], list[int]] = {}
        self.latency: dict[tuple[str, str], Distribution] = {}
        self._cells: dict[tuple[str, str, int], tuple[list[int], Distribution]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float | None) -> None:
        cells = self._cells.get((method, route, status))
        if cells is None:
            cells = self._cells[(method, route, status)] = self._cells_for(method, route, status)
        cells[0][0] += 1
        if seconds is not None:
            cells[1].observe(seconds)

    def _cells_for(
        self, method: str, route: str, status: int
    ) -> tuple[list[int], Distribution]:
        label = method if method in METHODS else "OTHER"
        count = self.counts.setdefault((label, route, str(status)), [0])
        latency = self.latency.get((label, route))
        if latency is None:
            latency = self.latency[(label, route)] = Distribution(SECONDS_BUCKETS)
        return count, latency


class RequestCollector(Collector):
    """``nocturnus_http_requests_total`` and ``nocturnus_http_request_duration_seconds``."""

    def __init__(self, stats: RequestStats) -> None:
        self._stats = stats

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "nocturnus_http_requests",
            "HTTP requests answered, by method, route template and status",
            labels=["method", "route", "status"],
        )
        for labels, (count,) in sorted(self._stats.counts.items()):
            requests.add_metric(list(labels), count)
        yield requests
        latency = HistogramMetricFamily(
            "nocturnus_http_request_duration_seconds",
            "Time from routing to response, by method and route template",
            labels=["method", "route"],
        )
        for route_labels, dist in sorted(self._stats.latency.items()):
            _histogram(latency, list(route_labels), dist)
        yield latency


def _sum(values: list[float]) -> float:
    return float(sum(values))


def _min(values: list[float]) -> float:
    return min(values, default=0.0)


def _max(values: list[float]) -> float:
    return max(values, default=0.0)


Combine = Callable[[list[float]], float]

# Per-database series read at scrape time: (name, help, value of one database, how the
# server-wide figure combines them; None: per database only). Names of counters get
# "_total" from prometheus-client.
COUNTERS: tuple[tuple[str, str, Callable[[Any], float]], ...] = (
    ("nocturnus_events_appended", "Events committed to the log",
     lambda db: db.writer.stats.records),
    ("nocturnus_group_commits", "Group commits (one transaction, one fsync)",
     lambda db: db.writer.stats.commits),
    ("nocturnus_group_commit_failures", "Group commits that failed",
     lambda db: db.writer.stats.failed_commits),
    # following other processes on the same store (issue 16)
    ("nocturnus_catch_ups", "Times this process caught up with other writers' appends",
     lambda db: db.stats.catch_ups),
    ("nocturnus_caught_up_events", "Other writers' events applied by catching up",
     lambda db: db.stats.caught_up_events),
    ("nocturnus_write_conflicts",
     "Appends refused because another writer changed the tenant first",
     lambda db: db.stats.conflicts),
    ("nocturnus_write_retries", "Writes decided again after catching up",
     lambda db: db.stats.retries),
    ("nocturnus_write_contended",
     "Writes given up after every attempt was refused (503 WRITE_CONTENTION)",
     lambda db: db.stats.contended),
)
GAUGES: tuple[tuple[str, str, Callable[[Any], float], Combine | None], ...] = (
    ("nocturnus_writer_up", "1 while the writer accepts writes (server-wide: every writer)",
     lambda db: 1.0 if db.writer.is_alive else 0.0, _min),
    ("nocturnus_writer_commit_running_seconds",
     "How long the commit in progress has run; 0 when idle (server-wide: the longest)",
     lambda db: db.writer.stats.commit_running_s(), _max),
    ("nocturnus_writer_queued_jobs", "Jobs waiting for the writer thread",
     lambda db: db.writer.queued, _sum),
    ("nocturnus_writer_last_commit_timestamp_seconds",
     "Unix time of the last successful commit (0: none since start)",
     lambda db: db.writer.stats.last_commit_at, _max),
    ("nocturnus_integrity_problems",
     ("Problems the last background verification of the log found (0: none or not "
     "verified yet)"),
     lambda db: db.integrity.problems, _sum),
    ("nocturnus_integrity_damaged_tenants",
     "Tenants refused with 503 TENANT_DAMAGED (found by verification or by a read)",
     lambda db: len(db.integrity.damaged), _sum),
    ("nocturnus_integrity_verified_timestamp_seconds",
     ("Unix time the last background verification of the log finished (0: none yet; "
     "server-wide: the oldest)"),
     lambda db: db.integrity.verified_at, _min),
    ("nocturnus_log_head_seq", "Seq of the newest event of the database's log",
     lambda db: db.head, None),
    ("nocturnus_catch_up_lag_events",
     "Seqs behind the log the last catch-up found this process (server-wide: the most)",
     lambda db: db.stats.catch_up_lag, _max),
    ("nocturnus_last_snapshot_timestamp_seconds",
     "Unix time of the newest snapshot known (0: none)",
     lambda db: db.stats.last_snapshot_at, None),
)
HISTOGRAMS: tuple[tuple[str, str, Callable[[Any], Distribution]], ...] = (
    ("nocturnus_group_commit_batch_requests", "Write requests sharing one group commit",
     lambda db: db.writer.stats.batch_appends),
    ("nocturnus_group_commit_batch_events", "Events written by one group commit",
     lambda db: db.writer.stats.batch_records),
    ("nocturnus_commit_duration_seconds",
     "Time one group commit took: encrypt, insert, COMMIT and its fsync",
     lambda db: db.writer.stats.commit_seconds),
    ("nocturnus_replay_duration_seconds",
     "Time to load one tenant projection (snapshot + later events)",
     lambda db: db.stats.replays),
    ("nocturnus_snapshot_duration_seconds", "Time to write one tenant snapshot",
     lambda db: db.stats.snapshots),
)
# Tenant databases only (not _system): their size, summed server-wide.
SIZES: tuple[tuple[str, str, Callable[[Any, list[Any]], float]], ...] = (
    ("nocturnus_tenants", "Tenants holding data",
     lambda db, loaded: len(db.tenant_names)),
    ("nocturnus_tenants_loaded", "Tenant projections in memory",
     lambda db, loaded: len(loaded)),
    ("nocturnus_facts", "Stored facts in the tenant projections in memory",
     lambda db, loaded: sum(t.fact_count() for t in loaded)),
)


class StorageCollector(Collector):
    """Reads writer and database stats at scrape time (see the module docstring).

    ``per_database``: one series per database, labelled ``database``; otherwise one
    server-wide series per metric, combined over the databases, and nothing that
    names a database or a path (what ``/metrics`` shows without a key, issue 14).
    """

    def __init__(
        self, databases: Callable[[], Databases | None], *, per_database: bool
    ) -> None:
        self._databases = databases
        self._per_database = per_database

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        databases = self._databases()
        if databases is None:
            return
        every: list[Database[Any]] = [databases.system, *databases.all()]
        tenant_dbs = [(db, list(db.loaded_tenants())) for db in databases.all()]
        if self._per_database:
            yield from self._each(every, tenant_dbs)
        else:
            yield from self._combined(every, tenant_dbs)
        yield GaugeMetricFamily(
            "nocturnus_databases", "Open databases (without _system)", value=len(tenant_dbs)
        )
        try:
            disk = shutil.disk_usage(databases.data_dir)
        except OSError:
            return  # the health check reports it; a scrape must still answer
        yield GaugeMetricFamily(
            "nocturnus_data_dir_free_bytes", "Free bytes on the data directory's disk",
            value=disk.free,
        )
        yield GaugeMetricFamily(
            "nocturnus_data_dir_size_bytes", "Size of the data directory's disk",
            value=disk.total,
        )

    @staticmethod
    def _each(
        every: list[Database[Any]], tenant_dbs: list[tuple[Database[Any], list[Any]]]
    ) -> Iterator[Metric]:
        label = ["database"]
        for name, doc, read in COUNTERS:
            counter = CounterMetricFamily(name, doc, labels=label)
            for db in every:
                counter.add_metric([db.name], read(db))
            yield counter
        for name, doc, read, _ in GAUGES:
            gauge = GaugeMetricFamily(name, doc, labels=label)
            for db in every:
                gauge.add_metric([db.name], read(db))
            yield gauge
        for name, doc, read_dist in HISTOGRAMS:
            histogram = HistogramMetricFamily(name, doc, labels=label)
            for db in every:
                _histogram(histogram, [db.name], read_dist(db))
            yield histogram
        for name, doc, size in SIZES:
            gauge = GaugeMetricFamily(name, doc, labels=label)
            for db, loaded in tenant_dbs:
                gauge.add_metric([db.name], size(db, loaded))
            yield gauge

    @staticmethod
    def _combined(
        every: list[Database[Any]], tenant_dbs: list[tuple[Database[Any], list[Any]]]
    ) -> Iterator[Metric]:
        for name, doc, read in COUNTERS:
            yield CounterMetricFamily(name, doc, value=sum(read(db) for db in every))
        for name, doc, read, combine in GAUGES:
            if combine is not None:
                yield GaugeMetricFamily(name, doc, value=combine([read(db) for db in every]))
        for name, doc, read_dist in HISTOGRAMS:
            histogram = HistogramMetricFamily(name, doc)
            _histogram(histogram, [], merged([read_dist(db) for db in every]))
            yield histogram
        for name, doc, size in SIZES:
            yield GaugeMetricFamily(
                name, doc, value=sum(size(db, loaded) for db, loaded in tenant_dbs)
            )


def merged(distributions: list[Distribution]) -> Distribution:
    """One distribution counting every observation of ``distributions`` (same bounds)."""
    if not distributions:
        return Distribution(SECONDS_BUCKETS)
    first = distributions[0]
    total = Distribution(first.bounds)
    for dist in distributions:
        total.counts = [a + b for a, b in zip(total.counts, dist.counts, strict=True)]
        total.total += dist.total
    return total


class ResidencyCollector(Collector):
    """The memory budget of tenant projections (``service/residency.py``), when set.

    Server-wide figures only (the budget is the process's): no database label.
    """

    def __init__(self, databases: Callable[[], Databases | None]) -> None:
        self._databases = databases

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        databases = self._databases()
        residency = None if databases is None else databases.residency
        if residency is None:
            return
        yield GaugeMetricFamily(
            "nocturnus_memory_budget_bytes",
            "The memory budget of tenant projections (NOCTURNUS_MEMORY_BUDGET_MB)",
            value=residency.budget_bytes,
        )
        yield GaugeMetricFamily(
            "nocturnus_memory_resident_bytes",
            "Estimated memory of the tenant projections in memory",
            value=residency.resident_bytes,
        )
        yield CounterMetricFamily(
            "nocturnus_tenant_evictions",
            "Idle tenant projections evicted to stay within the memory budget",
            value=residency.evictions,
        )


class McpCollector(Collector):
    """Open MCP sessions per transport: every process's (they are in the shared store),
    as counted when the scrape began (``McpState.count_sessions``)."""

    def __init__(self, mcp: Callable[[], McpState | None]) -> None:
        self._mcp = mcp

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        state = self._mcp()
        sessions = GaugeMetricFamily(
            "nocturnus_mcp_sessions", "Open MCP sessions, per transport", labels=["transport"]
        )
        counts = {} if state is None else state.counts
        for transport in ("sse", "http"):
            sessions.add_metric([transport], counts.get(transport, 0))
        yield sessions


@endpoint(
    metrics, "GET", "/metrics", summary="Prometheus metrics (text exposition format)",
    response_type=CONTENT_TYPE,
)
async def scrape(call: Call) -> HTTPResponse:
    mcp = call.request.app.ctx.mcp
    if mcp is not None:
        await mcp.count_sessions()
    body = call.request.app.ctx.metrics.render(per_database=sees_detail(call.request))
    return HTTPResponse(body, content_type=CONTENT_TYPE)
