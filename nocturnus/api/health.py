"""Liveness, readiness and a health report (API.md §7)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from sanic import Blueprint, HTTPResponse

from nocturnus import __version__
from nocturnus.api.endpoint import Call, endpoint, json_response

health = Blueprint("health")

MIN_FREE_BYTES = 256 * 1024 * 1024


def _check(ok: bool, message: str, warn: bool = False) -> dict[str, str]:
    status = "pass" if ok else ("warn" if warn else "fail")
    return {"status": status, "message": message}


@endpoint(health, "GET", "/health", summary="Health report with checks")
async def report(call: Call) -> HTTPResponse:
    ctx = call.request.app.ctx
    data_dir = ctx.settings.data_dir
    free = shutil.disk_usage(data_dir).free
    writers = {db.name: db.writer.is_alive for db in [ctx.databases.system, *ctx.databases.all()]}
    checks: dict[str, Any] = {
        "data_dir": _check(data_dir.is_dir() and _writable(data_dir), f"{data_dir}"),
        "disk_space": _check(free >= MIN_FREE_BYTES, f"{free // (1024 * 1024)} MiB free", warn=True),
        "writers": _check(all(writers.values()), ", ".join(
            f"{name}: {'alive' if alive else 'stopped'}" for name, alive in writers.items()
        )),
    }
    statuses = {c["status"] for c in checks.values()}
    status = "failing" if "fail" in statuses else "degraded" if "warn" in statuses else "ok"
    body = {"status": status, "version": __version__, "checks": checks}
    return json_response(body, 503 if status == "failing" else 200)


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK)


@endpoint(health, "GET", "/health/live", summary="The process is up")
async def live(call: Call) -> dict[str, Any]:
    return {"status": "ok"}


@endpoint(health, "GET", "/health/ready", summary="Ready to serve (start-up finished)")
async def ready(call: Call) -> HTTPResponse:
    is_ready = call.request.app.ctx.ready
    return json_response({"status": "ok" if is_ready else "starting"}, 200 if is_ready else 503)
