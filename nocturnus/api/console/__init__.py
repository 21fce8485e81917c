"""The web console: a static front-end over the public API (issue 21)."""

from __future__ import annotations

from nocturnus.api.console.routes import console

__all__ = ["console"]
