"""Session diffs: what changed in a session's window since the last one it was sent.

A diff builds the window the request asks for, compares it with the session's last
window entry by entry (by content fingerprint), and makes the new window the session's
last one. Its text lists the entries that left (``-``) and came (``+``), each rendered
the same way: as the request's format renders a window line, scope suffix included when
the window spans every scope (issue 20: the ``-`` lines used to lose it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nocturnus.service import queries
from nocturnus.service.context.sessions import WINDOWS, SentEntry, SentWindow, Sessions
from nocturnus.service.context.window import (
    ContextConfig,
    Db,
    Window,
    WindowEntry,
    WindowRequest,
    goal_window,
    remember_uses,
)
from nocturnus.service.facts import FactKey
from nocturnus.service.formats import render_line

FULL_REFRESH_CHURN = 0.5
"""A diff recommends a full refresh when more than this share of the window changed."""


@dataclass(frozen=True, slots=True)
class WindowDiff:
    """A session's new window and how it differs from the previous one."""

    previous_window_id: str | None
    window: Window
    added: tuple[WindowEntry, ...]
    removed: tuple[FactKey, ...]
    unchanged: int
    full_refresh: bool
    reason: str | None
    text: str


async def diff(
    db: Db, tenant: str, req: WindowRequest, cfg: ContextConfig, sessions: Sessions
) -> WindowDiff:
    """What changed since the session's last window; the new window replaces it.

    The window is built as ``/context/optimize`` builds it; the comparison is with the
    window the session holds in the shared store at the moment the new one replaces it
    (compare-and-set: two diffs of one session racing on two processes are each
    computed against the window the other stored, or against the same one for the
    first of them to store; neither answer skips a window).
    """
    assert req.session_id is not None
    async with db.evaluator.turn((db.name, tenant)):
        state, now = await db.current(tenant)
        model = db.read_models.of(state)
        window = await goal_window(db, tenant, state, model, req, cfg)
    remember_uses(db, tenant, window, now)
    sent = SentWindow.of(window)
    encoded = sent.encode()
    compared: list[WindowDiff] = []

    def replace(stored: bytes | None) -> bytes:
        previous = None if stored is None else SentWindow.decode(stored)
        compared[:] = [_compare(req, window, sent, previous)]
        return encoded

    await sessions.update(WINDOWS, req.session_id, replace)
    return compared[0]


def _compare(
    req: WindowRequest, window: Window, sent: SentWindow, previous: SentWindow | None
) -> WindowDiff:
    """How ``window`` (sent as ``sent``) differs from the session's ``previous``."""
    before = previous.entries if previous is not None else {}
    added = []
    unchanged = 0
    for entry in window.entries:
        was = before.get(entry.key)
        if was is not None and was.fingerprint == sent.entries[entry.key].fingerprint:
            unchanged += 1
        else:
            added.append(entry)
    current = {key: e.fingerprint for key, e in sent.entries.items()}
    removed = [e for key, e in before.items() if current.get(key) != e.fingerprint]
    removed.sort(key=lambda e: queries.fact_order(e.key))
    reason: str | None
    if previous is None:
        full, reason = True, "no previous window for this session: every entry is added"
    else:
        # churn: the share of the window's slots that changed hands (a window that only
        # grows by a few facts is not churning)
        churn = max(len(added), len(removed)) / max(len(before), len(window.entries), 1)
        full = churn > FULL_REFRESH_CHURN
        reason = (
            f"high churn ({round(churn * 100)}%): full refresh cheaper than patching"
            if full
            else None
        )
    return WindowDiff(
        previous.window_id if previous is not None else None,
        window,
        tuple(added),
        tuple(e.key for e in removed),
        unchanged,
        full,
        reason,
        diff_text(req, added, removed),
    )


def diff_text(
    req: WindowRequest, added: Sequence[WindowEntry], removed: Sequence[SentEntry]
) -> str:
    """``-`` then ``+`` lines, both signs rendered by :func:`diff_line`."""
    lines = [f"- {diff_line(req, e)}" for e in removed]
    lines += [f"+ {diff_line(req, e)}" for e in added]
    return "\n".join(lines)


def diff_line(req: WindowRequest, entry: WindowEntry | SentEntry) -> str:
    """An entry as the request's format writes it in a window (without the structured
    format's ``- `` bullet), scope suffix included when the window spans every scope.

    An entry that left the window renders as it was when it was sent.
    """
    line = render_line(
        req.fmt,
        entry.key,
        entry.confidence,
        entry.salience,
        entry.category,
        req.scope is None,
    )
    return line.removeprefix("- ")


async def clear_session(sessions: Sessions, session_id: str) -> bool:
    """Forget a session's last window; False when the session was not known."""
    return await sessions.forget(WINDOWS, session_id)
