"""Nocturnus: an event-sourced, multi-tenant logic server for AI agents."""

__version__ = "0.1.0"
