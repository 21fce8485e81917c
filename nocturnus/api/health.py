"""Liveness, readiness and a health report (API.md §7).

``/health`` runs its checks on every call (each is cheap: one statvfs, one small file
written and removed off the event loop, in-memory writer, snapshot and integrity state —
the integrity check reads what the background verification found, it never verifies
itself) and answers
``ok`` (all pass), ``degraded`` (a warning: 200) or ``failing`` (a failure: 503, so a load
balancer stops sending traffic). ``/health/live`` only says the process answers;
``/health/ready`` turns 200 once start-up replay has finished.

Without a key that may see every database (``metrics_read`` without limits; anyone
with auth off) the messages name no database and no path, only counts and ages
(issue 14); the statuses are the same either way.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from sanic import Blueprint, HTTPResponse

from nocturnus import __version__
from nocturnus.api.endpoint import Call, endpoint, json_response, sees_detail
from nocturnus.service.databases import SYSTEM_DATABASE

health = Blueprint("health")

# Below this much free space the server is degraded; below the second, failing (SQLite
# needs room for its WAL and checkpoints; a full disk turns every write into a 503).
MIN_FREE_BYTES = 256 * 1024 * 1024
CRITICAL_FREE_BYTES = 32 * 1024 * 1024
WRITE_PROBE_TIMEOUT_S = 2.0
# A commit running this long means the disk (or fsync) is stalled.
STALLED_COMMIT_S = 5.0
# A snapshot older than this while writes go on makes restarts replay a long tail.
SNAPSHOT_MAX_AGE_S = 24 * 3600
# The memory check names at most this many resident tenants per database (detail only).
RESIDENT_SHOWN = 100


def _check(status: str, message: str) -> dict[str, str]:
    return {"status": status, "message": message}


async def _data_dir_check(data_dir: Path, detail: bool) -> dict[str, str]:
    where = f"{data_dir}: " if detail else ""
    try:
        await asyncio.wait_for(asyncio.to_thread(_probe_write, data_dir), WRITE_PROBE_TIMEOUT_S)
    except TimeoutError:
        return _check("fail", f"{where}a small write took over {WRITE_PROBE_TIMEOUT_S:g} s")
    except OSError as e:
        return _check("fail", f"{where}not writable ({e.strerror or type(e).__name__})")
    return _check("pass", f"{where}writable")


def _probe_write(data_dir: Path) -> None:
    """Create, write and remove a small file: what os.access cannot tell (full, RO)."""
    probe = data_dir / f".health-{uuid.uuid4().hex}"
    try:
        with open(probe, "wb") as f:
            f.write(b"ok")
    finally:
        probe.unlink(missing_ok=True)


def _disk_check(data_dir: Path) -> dict[str, str]:
    try:
        free = shutil.disk_usage(data_dir).free
    except OSError as e:
        return _check("fail", f"cannot read free space: {e.strerror or type(e).__name__}")
    message = f"{free // (1024 * 1024)} MiB free"
    if free < CRITICAL_FREE_BYTES:
        return _check("fail", message)
    return _check("warn" if free < MIN_FREE_BYTES else "pass", message)


def _writers_check(databases: list[Any], detail: bool) -> dict[str, str]:
    states = []
    stopped = stalled = 0
    now = time.monotonic()
    for db in databases:
        running = db.writer.stats.commit_running_s(now)
        if not db.writer.is_alive:
            states.append(f"{db.name}: stopped")
            stopped += 1
        elif running >= STALLED_COMMIT_S:
            states.append(f"{db.name}: commit running for {running:.0f} s")
            stalled += 1
        else:
            states.append(f"{db.name}: alive")
    status = "fail" if stopped else "warn" if stalled else "pass"
    if detail:
        return _check(status, ", ".join(states))
    counts = [f"{len(databases) - stopped - stalled} of {len(databases)} alive"]
    if stopped:
        counts.append(f"{stopped} stopped")
    if stalled:
        counts.append(f"{stalled} with a commit running over {STALLED_COMMIT_S:g} s")
    return _check(status, ", ".join(counts))


def _snapshots_check(databases: list[Any], detail: bool) -> dict[str, str] | None:
    """Snapshot ages, when any snapshot is known; ``None`` leaves the check out."""
    known = [db for db in databases if db.stats.last_snapshot_at > 0]
    if not known:
        return None
    now = time.time()
    status = "pass"
    ages = []
    for db in known:
        age = now - db.stats.last_snapshot_at
        ages.append((db.name, age))
        if age > SNAPSHOT_MAX_AGE_S and db.writer.stats.last_commit_at > db.stats.last_snapshot_at:
            status = "warn"
    if detail:
        return _check(status, "last snapshot " + ", ".join(f"{n}: {a:.0f} s" for n, a in ages))
    oldest = max(age for _, age in ages)
    return _check(status, f"last snapshot of {len(ages)} database(s), oldest {oldest:.0f} s")


def _memory_check(residency: Any, databases: list[Any], detail: bool) -> dict[str, Any]:
    """The memory budget (service/residency.py): a warning while the tenants that cannot
    be evicted (requests, transactions in flight) keep the estimate over it.

    With detail, ``resident`` names each database's tenants in memory, least recently
    used first (the most recent :data:`RESIDENT_SHOWN`).
    """
    mib = 1024 * 1024
    message = (
        f"{len(residency)} tenant projection(s) in memory, about "
        f"{residency.resident_bytes / mib:.1f} of {residency.budget_bytes / mib:g} MiB; "
        f"{residency.evictions} evicted since start"
    )
    over = residency.is_over and not residency.is_settling
    check: dict[str, Any] = _check("warn" if over else "pass", message)
    if detail:
        check["resident"] = {
            db.name: residency.resident(db.name)[-RESIDENT_SHOWN:] for db in databases
        }
    return check


def _integrity_check(databases: list[Any], detail: bool) -> dict[str, str]:
    """What verification and reads found (issue 14): ``warn`` for damage that leaves the
    other tenants serving (a damaged tenant, a removed row) or a verification that could
    not run, ``fail`` for damage every tenant of a database shares (its database level,
    or the ``_system`` registry of databases and keys)."""
    now = time.time()
    damaged = [db for db in databases if not db.integrity.is_intact]
    if not damaged:
        verified = [db.integrity.verified_at for db in databases if db.integrity.verified_at]
        if len(verified) < len(databases):
            return _check("pass", "no damage known; not every database verified yet")
        return _check(
            "pass",
            f"{len(verified)} database(s) verified, no damage; oldest verification "
            f"{now - min(verified):.0f} s ago",
        )
    shared = any(
        db.integrity.is_database_level_damaged
        or (db.name == SYSTEM_DATABASE and (db.integrity.problems or db.integrity.damaged))
        for db in damaged
    )
    status = "fail" if shared else "warn"
    if detail:
        return _check(status, "; ".join(_integrity_detail(db.integrity) for db in damaged))
    problems = sum(db.integrity.problems for db in damaged)
    tenants = sum(len(db.integrity.damaged) for db in damaged)
    return _check(
        status,
        f"{len(damaged)} of {len(databases)} database(s) damaged or unverifiable: "
        f"{problems} problem(s) found by verification, {tenants} damaged tenant(s)",
    )


def _integrity_detail(integrity: Any) -> str:
    parts = []
    if integrity.error is not None:
        parts.append(f"verification failed: {integrity.error}")
    if integrity.summary:
        parts.append(integrity.summary)
    if integrity.damaged:
        names = ", ".join(repr(t) if t else "the database level" for t in integrity.damaged)
        parts.append(f"damaged tenants (answer 503 TENANT_DAMAGED): {names}")
    return f"{integrity.database}: " + "; ".join(parts)


@endpoint(health, "GET", "/health", summary="Health report with checks (503 when failing)")
async def report(call: Call) -> HTTPResponse:
    ctx = call.request.app.ctx
    detail = sees_detail(call.request)
    data_dir = ctx.settings.data_dir
    checks: dict[str, Any] = {
        "data_dir": await _data_dir_check(data_dir, detail),
        "disk_space": _disk_check(data_dir),
    }
    if ctx.databases is None:
        checks["writers"] = _check("fail", "databases are not open")
    else:
        databases = [ctx.databases.system, *ctx.databases.all()]
        checks["writers"] = _writers_check(databases, detail)
        checks["integrity"] = _integrity_check(databases, detail)
        snapshots = _snapshots_check(databases, detail)
        if snapshots is not None:
            checks["snapshots"] = snapshots
        if ctx.databases.residency is not None:
            checks["memory"] = _memory_check(
                ctx.databases.residency, ctx.databases.all(), detail
            )
    statuses = {c["status"] for c in checks.values()}
    status = "failing" if "fail" in statuses else "degraded" if "warn" in statuses else "ok"
    body = {"status": status, "version": __version__, "checks": checks}
    return json_response(body, 503 if status == "failing" else 200)


@endpoint(health, "GET", "/health/live", summary="The process is up")
async def live(call: Call) -> dict[str, Any]:
    return {"status": "ok"}


@endpoint(
    health,
    "GET",
    "/health/ready",
    summary="Ready to serve: start-up replay finished (503 before)",
)
async def ready(call: Call) -> HTTPResponse:
    is_ready = call.request.app.ctx.ready
    return json_response({"status": "ok" if is_ready else "starting"}, 200 if is_ready else 503)
