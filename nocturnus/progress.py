"""How a long operation (replay, verify, compact, backup, restore) reports progress."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[int, int], None]
"""``progress(done, total)``, called now and then while the work runs (the CLI draws a
bar from it); ``done == total`` at the end."""
