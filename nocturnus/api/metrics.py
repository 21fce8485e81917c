"""``GET /metrics``: Prometheus text, from one registry per app.

Request counters and latency histograms are recorded by the request middleware. Everything
about storage (events appended, group-commit batch sizes, commit/fsync time, writer state,
facts and tenants per database, replay and snapshot durations) is read at scrape time from
the stats the writers and databases keep anyway, so the hot path pays nothing extra for it
and databases created later are included without any wiring.

Labels stay low-cardinality: ``database`` (operator-created), route *templates* (never raw
paths), status and method. There is deliberately no tenant label.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
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
from nocturnus.api.endpoint import Call, endpoint
from nocturnus.store.distribution import SECONDS_BUCKETS, Distribution

if TYPE_CHECKING:
    from nocturnus.service.databases import Databases

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
UNMATCHED = "<unmatched>"

metrics = Blueprint("metrics")


class Metrics:
    """The metrics of one app. Nothing global: tests may build several apps."""

    def __init__(self, databases: Callable[[], Databases | None]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "nocturnus_http_requests",
            "HTTP requests answered, by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "nocturnus_http_request_duration_seconds",
            "Time from routing to response, by method and route template",
            ["method", "route"],
            buckets=SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.mcp_sessions = Gauge(
            "nocturnus_mcp_sessions",
            "Open MCP sessions; the MCP surface sets or inc()/dec()s it",
            registry=self.registry,
        )
        self.startup_seconds = Gauge(
            "nocturnus_startup_duration_seconds",
            "Time the last start-up took to open every database and replay its root",
            registry=self.registry,
        )
        info = Gauge(
            "nocturnus_build_info", "Always 1; the version as a label", ["version"],
            registry=self.registry,
        )
        info.labels(__version__).set(1)
        self.registry.register(StorageCollector(databases))

    def observe_request(self, method: str, route: str, status: int, seconds: float | None) -> None:
        method = method if method in METHODS else "OTHER"
        self.requests.labels(method, route, str(status)).inc()
        if seconds is not None:
            self.latency.labels(method, route).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


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


class StorageCollector(Collector):
    """Reads writer and database stats at scrape time (see the module docstring)."""

    def __init__(self, databases: Callable[[], Databases | None]) -> None:
        self._databases = databases

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        databases = self._databases()
        if databases is None:
            return
        label = ["database"]
        events = CounterMetricFamily(
            "nocturnus_events_appended", "Events committed to the database's log", labels=label
        )
        commits = CounterMetricFamily(
            "nocturnus_group_commits", "Group commits (one transaction, one fsync)", labels=label
        )
        failed = CounterMetricFamily(
            "nocturnus_group_commit_failures", "Group commits that failed", labels=label
        )
        batch = HistogramMetricFamily(
            "nocturnus_group_commit_batch_requests",
            "Write requests sharing one group commit", labels=label,
        )
        batch_events = HistogramMetricFamily(
            "nocturnus_group_commit_batch_events", "Events written by one group commit",
            labels=label,
        )
        commit = HistogramMetricFamily(
            "nocturnus_commit_duration_seconds",
            "Time one group commit took: encrypt, insert, COMMIT and its fsync", labels=label,
        )
        up = GaugeMetricFamily(
            "nocturnus_writer_up", "1 while the database's writer accepts writes", labels=label
        )
        running = GaugeMetricFamily(
            "nocturnus_writer_commit_running_seconds",
            "How long the commit in progress has run; 0 when idle (a stall grows here)",
            labels=label,
        )
        queued = GaugeMetricFamily(
            "nocturnus_writer_queued_jobs", "Jobs waiting for the writer thread", labels=label
        )
        last_commit = GaugeMetricFamily(
            "nocturnus_writer_last_commit_timestamp_seconds",
            "Unix time of the last successful commit (0: none since start)", labels=label,
        )
        head = GaugeMetricFamily(
            "nocturnus_log_head_seq", "Seq of the newest event of the database's log",
            labels=label,
        )
        tenants = GaugeMetricFamily(
            "nocturnus_tenants", "Tenants holding data, per database", labels=label
        )
        loaded = GaugeMetricFamily(
            "nocturnus_tenants_loaded", "Tenant projections in memory, per database",
            labels=label,
        )
        facts = GaugeMetricFamily(
            "nocturnus_facts", "Stored facts in the tenant projections in memory", labels=label
        )
        replays = HistogramMetricFamily(
            "nocturnus_replay_duration_seconds",
            "Time to load one tenant projection (snapshot + later events)", labels=label,
        )
        snapshots = HistogramMetricFamily(
            "nocturnus_snapshot_duration_seconds", "Time to write one tenant snapshot",
            labels=label,
        )
        last_snapshot = GaugeMetricFamily(
            "nocturnus_last_snapshot_timestamp_seconds",
            "Unix time of the newest snapshot known (0: none)", labels=label,
        )
        now = time.monotonic()
        every = [databases.system, *databases.all()]
        for db in every:
            name = [db.name]
            w = db.writer.stats
            events.add_metric(name, w.records)
            commits.add_metric(name, w.commits)
            failed.add_metric(name, w.failed_commits)
            _histogram(batch, name, w.batch_appends)
            _histogram(batch_events, name, w.batch_records)
            _histogram(commit, name, w.commit_seconds)
            up.add_metric(name, 1.0 if db.writer.is_alive else 0.0)
            running.add_metric(name, w.commit_running_s(now))
            queued.add_metric(name, db.writer.queued)
            last_commit.add_metric(name, w.last_commit_at)
            head.add_metric(name, db.head)
            s = db.stats
            _histogram(replays, name, s.replays)
            _histogram(snapshots, name, s.snapshots)
            last_snapshot.add_metric(name, s.last_snapshot_at)
            if db is not databases.system:
                projections = list(db.loaded_tenants())
                tenants.add_metric(name, len(db.tenant_names))
                loaded.add_metric(name, len(projections))
                facts.add_metric(name, sum(t.fact_count() for t in projections))
        yield GaugeMetricFamily(
            "nocturnus_databases", "Open databases (without _system)", value=len(every) - 1
        )
        try:
            disk = shutil.disk_usage(databases.data_dir)
        except OSError:
            pass  # the health check reports it; a scrape must still answer
        else:
            yield GaugeMetricFamily(
                "nocturnus_data_dir_free_bytes", "Free bytes on the data directory's disk",
                value=disk.free,
            )
            yield GaugeMetricFamily(
                "nocturnus_data_dir_size_bytes", "Size of the data directory's disk",
                value=disk.total,
            )
        yield from (
            events, commits, failed, batch, batch_events, commit, up, running, queued,
            last_commit, head, tenants, loaded, facts, replays, snapshots,
            last_snapshot,
        )


@endpoint(
    metrics, "GET", "/metrics", summary="Prometheus metrics (text exposition format)",
    response_type=CONTENT_TYPE,
)
async def scrape(call: Call) -> HTTPResponse:
    body = call.request.app.ctx.metrics.render()
    return HTTPResponse(body, content_type=CONTENT_TYPE)
