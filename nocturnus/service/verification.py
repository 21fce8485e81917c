"""The background verification of every log: after start-up, then on a schedule.

Each pass verifies every database in turn (``_system`` first) with
:func:`~nocturnus.store.verify.verify_log` — the whole chain, every authentication tag,
every snapshot, every destroyed key — on a read-only connection of its own in a worker
thread, so writes and reads go on meanwhile (a live log verifies: rows appended during
the walk belong to a later head). What it finds goes to each database's
:class:`~nocturnus.service.integrity.Integrity`: damaged tenants are refused from then
on, ``/health`` and ``/metrics`` report it, and the first finding is logged as an error.
``NOCTURNUS_VERIFY_INTERVAL_S`` sets the schedule; 0 turns it off (only reads then find
damage, and ``nocturnus verify`` offline).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from nocturnus.errors import NocturnusError
from nocturnus.service.database import Database
from nocturnus.service.databases import Databases
from nocturnus.store.verify import VerifyReport, verify_log

log = logging.getLogger("nocturnus.service")


class Stopped(Exception):
    """The server is stopping: a verification in progress gives up."""


async def verify_database(db: Database[Any], stop: threading.Event) -> VerifyReport:
    """Verify ``db``'s whole log in a worker thread and record what was found.

    :raises Stopped: ``stop`` was set (checked every few thousand events).
    :raises NocturnusError: the log could not be read (recorded as the check's error).
    """

    def check(done: int, total: int) -> None:
        if stop.is_set():
            raise Stopped

    def run() -> VerifyReport:
        sealer = db.open_readonly_log()
        try:
            return verify_log(sealer, check)
        finally:
            sealer.close()

    try:
        report = await asyncio.to_thread(run)
    except NocturnusError as e:
        db.integrity.failed(e.message, time.time())
        raise
    new = db.integrity.record(report, time.time())
    for tenant in report.damaged_tenants:
        db.evict(tenant)
    if not report.ok:
        log.error(
            "verification of database %r found damage (%s); damaged tenants answer 503 "
            "TENANT_DAMAGED: %s",
            db.name,
            f"newly damaged tenants: {', '.join(map(repr, new))}" if new else "no new tenant",
            report.summary(),
        )
    return report


async def verify_every(databases: Databases, interval_s: float, stop: threading.Event) -> None:
    """Verify every database now, then again every ``interval_s`` seconds, until
    cancelled or ``stop`` is set. A database that cannot be read is reported and the
    pass goes on with the next."""
    while not stop.is_set():
        every: list[Database[Any]] = [databases.system, *databases.all()]
        for db in every:
            try:
                await verify_database(db, stop)
            except Stopped:
                return
            except NocturnusError as e:
                log.warning("verification of database %r could not run: %s", db.name, e)
        await asyncio.sleep(interval_s)
