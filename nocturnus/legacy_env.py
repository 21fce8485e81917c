"""The original product's environment variable names, read as fallbacks for ours.

Someone moving from the original keeps a deployment's environment (``PORT``,
``STORAGE_DIR``, ``AUTH_ENABLED``, ``CORS_ALLOWED_ORIGINS``, ``LOG_FILE``...): each name
below stands in for one ``NOCTURNUS_*`` setting when that setting is not set itself
(ours win when both are). ``API_KEY`` (the original's one shared secret) becomes the
never-stored admin key and turns auth on, as it did there. Names with no equivalent
here are reported, never silently ignored. :func:`report` says which were used, for
``nocturnus serve`` to log.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from nocturnus.errors import StartupError


@dataclass(frozen=True, slots=True)
class Fallback:
    """The original's ``name`` supplies our setting ``setting`` when ours is unset."""

    name: str
    setting: str


FALLBACKS: tuple[Fallback, ...] = (
    Fallback("PORT", "port"),
    Fallback("HOST", "host"),
    Fallback("STORAGE_DIR", "data_dir"),
    Fallback("ENCRYPTION_KEY", "master_key"),
    Fallback("API_KEY", "admin_key"),
    Fallback("NOCTURNUSAI_ADMIN_USER", "bootstrap_user"),
    Fallback("NOCTURNUSAI_ADMIN_PASS", "bootstrap_password"),
    Fallback("API_KEY_DEFAULT_EXPIRY_DAYS", "key_default_expiry_days"),
    Fallback("TRUSTED_PROXY_IPS", "trusted_proxies"),
    Fallback("CORS_ALLOWED_ORIGINS", "cors_origins"),
    Fallback("MAX_REQUEST_BODY_BYTES", "max_body_bytes"),
    Fallback("MAX_BULK_FACTS", "max_bulk_facts"),
    Fallback("RATE_LIMIT_READER_RPM", "rate_limit_reader_rpm"),
    Fallback("RATE_LIMIT_WRITER_RPM", "rate_limit_writer_rpm"),
    Fallback("RATE_LIMIT_ADMIN_RPM", "rate_limit_admin_rpm"),
    Fallback("LOG_FORMAT", "log_format"),
    Fallback("LOG_LEVEL", "log_level"),
    Fallback("LOG_FILE", "log_file"),
)
"""One to one: the value is taken as is (and checked like ours)."""

AUTH_NAMES = ("AUTH_ENABLED", "API_KEY")
"""What decides ``auth`` in the original: ``AUTH_ENABLED=true`` (managed keys) or an
``API_KEY`` (one shared secret) turns it on."""

UNSUPPORTED: dict[str, str] = {
    "TLS_ENABLED": "terminate TLS in a reverse proxy (see ops/)",
    "REPLICATION_MODE": "replicas share a PostgreSQL store instead (NOCTURNUS_STORE)",
    "LEADER_URL": "replicas share a PostgreSQL store instead (NOCTURNUS_STORE)",
    "API_KEY_PEPPER": "keys are stored as argon2id hashes; the original's hashes do not carry over",
}


def _set(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    return value if value is not None and value.strip() != "" else None


def _ours(setting: str) -> str:
    return "NOCTURNUS_" + setting.upper()


def fallback_values(env: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """Our settings (not set themselves) that the original's names supply: setting →
    (the original's name, raw value).

    :raises StartupError: ``AUTH_ENABLED`` is neither true nor false.
    """
    values = {
        f.setting: (f.name, value)
        for f in FALLBACKS
        if _set(env, _ours(f.setting)) is None and (value := _set(env, f.name)) is not None
    }
    if _set(env, "NOCTURNUS_AUTH") is None:
        auth = _auth(env)
        if auth is not None:
            values["auth"] = ("AUTH_ENABLED/API_KEY", auth)
    return values


def _auth(env: Mapping[str, str]) -> str | None:
    enabled = _set(env, "AUTH_ENABLED")
    if enabled is not None and enabled.strip().lower() not in ("true", "false"):
        raise StartupError(f"AUTH_ENABLED must be true or false, got {enabled!r}")
    if (enabled is not None and enabled.strip().lower() == "true") or _set(env, "API_KEY"):
        return "on"
    return None if enabled is None else "off"


def report(env: Mapping[str, str]) -> list[tuple[str, str]]:
    """``(level, message)`` lines naming each of the original's names that is set:
    used, overridden by ours, or without an equivalent (never a value: some are
    secrets)."""
    lines: list[tuple[str, str]] = []
    pairs = [(f.name, f.setting) for f in FALLBACKS] + [(n, "auth") for n in AUTH_NAMES]
    for name, setting in pairs:
        if _set(env, name) is None:
            continue
        ours = _ours(setting)
        if _set(env, ours) is not None:
            lines.append(("info", f"{name} is ignored: {ours} is set and wins"))
        else:
            lines.append(("info", f"{name} (the original's name) sets {ours}"))
    for name, instead in UNSUPPORTED.items():
        if _set(env, name) is not None:
            lines.append(("warning", f"{name} has no equivalent and is ignored: {instead}"))
    return lines
