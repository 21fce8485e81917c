"""Every setting the server reads, declared once.

Values come from the defaults below, then ``NOCTURNUS_<NAME>`` environment variables, then
CLI flags. Unknown or badly typed values raise :class:`StartupError`, which the CLI prints
as one line. Secrets (the master key, the admin key, the bootstrap password) never have
defaults. The original product's names are fallbacks (:mod:`nocturnus.legacy_env`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nocturnus.errors import StartupError
from nocturnus.legacy_env import fallback_values


@dataclass(frozen=True, slots=True)
class Setting:
    """One declared setting: its name, type, default and the help shown in the docs."""

    name: str
    type: type
    default: Any
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("host", str, "127.0.0.1", "Address to listen on"),
    Setting("port", int, 9300, "TCP port to listen on"),
    Setting("data_dir", Path, Path("./data"), "Directory holding one SQLite log per database"),
    Setting("master_key", str, None, "32-byte master key (hex or base64); else "
            "data_dir/master.key"),
    Setting("store", str, "", "Where the event logs live: empty for SQLite files in the "
            "data dir, or a postgresql:// URL (one schema per database)"),
    Setting("store_pool_size", int, 10, "Most connections to PostgreSQL per server process"),
    Setting("workers", int, 1, "Server processes sharing the port and the store (each "
            "serves every database and tenant)"),
    Setting("backup_retention", int, 7, "Days the server keeps the backups of POST "
            "/admin/backups (0 = forever)"),
    Setting("max_body_bytes", int, 10 * 1024 * 1024, "Largest accepted request body"),
    Setting("max_bulk_facts", int, 10_000, "Most facts in one /assert/facts call"),
    Setting("snapshot_every", int, 10_000, "Events of a tenant between automatic "
            "snapshots (more for big tenants: see Storage)"),
    Setting("memory_budget_mb", int, 0, "Estimated MiB of tenant projections one process "
            "keeps; beyond it idle tenants are snapshotted and evicted, least recently "
            "used first (0 = no budget: see Memory budget)"),

    Setting("verify_interval_s", int, 21_600, "Seconds between background verifications "
            "of every whole log, the first right after start-up (0 = off)"),
    Setting("salience_half_life_ms", int, 3_600_000, "Recency half-life used by salience"),
    Setting("uses_flush_ms", int, 2_000, "Longest a use of a fact waits in a process "
            "before it is logged for every process's salience when no write to its tenant "
            "takes it along (0 = only with writes and at shutdown)"),
    Setting("context_sessions", int, 1000, "Context sessions remembered per tenant (LRU)"),
    Setting("plan_cache_size", int, 4096, "Prepared query plans kept in the process (LRU)"),
    Setting("plan_cache_per_tenant", int, 256, "Prepared query plans kept per tenant (LRU)"),
    # query governance (issue 13): README "Query limits"
    Setting("query_max_rows", int, 1_000_000, "Most rows one question may derive "
            "(0 = unlimited); past it a 422 QUERY_BUDGET_EXCEEDED"),
    Setting("query_timeout_ms", int, 10_000, "Longest one question may evaluate "
            "(0 = unlimited); past it a 422 QUERY_BUDGET_EXCEEDED"),
    Setting("query_max_answers", int, 100_000, "Most answers one response may carry "
            "(0 = unlimited; page with limit and cursor)"),
    Setting("query_workers", int, 4, "Threads evaluating questions off the event loop "
            "(one question per tenant at a time)"),
    Setting("mcp_sessions", int, 256, "Most open MCP sessions of each transport (SSE, "
            "streamable HTTP)"),
    Setting("mcp_sessions_per_key", int, 32, "Most open MCP sessions of one API key, "
            "per transport (auth on)"),
    Setting("mcp_sessions_per_tenant", int, 64, "Most open MCP sessions on one "
            "database's tenant, per transport"),
    Setting("mcp_session_idle_s", int, 3600, "Seconds unused after which a streamable "
            "HTTP session may be ended to make room"),
    Setting("mcp_keepalive_ms", int, 15_000, "Interval of keepalive comments on MCP SSE streams"),
    Setting("log_format", str, "text", "Log line format: text or json"),
    Setting("log_level", str, "INFO", "Log level"),
    Setting("log_file", Path, None, "Also append log lines to this file (rotated at 50 "
            "MB, 20 old files kept)"),
    # security (issue 7): API.md §8
    Setting("auth", str, "off", "API keys: off (loopback only) or on"),
    Setting("allow_insecure", bool, False, "Allow auth off on a non-loopback address"),
    Setting("admin_key", str, None, "An admin API key taken as is (never stored)"),
    Setting("bootstrap_user", str, "admin", "User name POST /auth/bootstrap expects"),
    Setting("bootstrap_password", str, None, "Password of POST /auth/bootstrap (at "
            "least 16 characters; unset: no bootstrap over HTTP)"),
    Setting("metrics_public", bool, True, "Serve /metrics without a key"),
    Setting("cors_origins", str, "", "Comma-separated origins allowed by CORS (* = any)"),
    Setting("trusted_proxies", str, "", "Comma-separated proxy addresses whose "
            "X-Forwarded-For is believed"),
    Setting("auth_failures_per_minute", int, 20, "Failed authentications per client "
            "address before a lockout"),
    Setting("auth_lockout_s", int, 60, "Seconds a client address stays locked out"),
    Setting("auth_checks", int, 4, "Argon2 key checks running at once (each holds 64 "
            "MiB); more wait"),
    Setting("auth_checks_per_client", int, 2, "Argon2 key checks in flight per client "
            "address (0 = no bound); more get 429"),
    Setting("rate_limit_reader_rpm", int, 600, "Requests per minute per reader key (0 = "
            "unlimited)"),
    Setting("rate_limit_writer_rpm", int, 1200, "Requests per minute per writer key (0 "
            "= unlimited)"),
    Setting("rate_limit_admin_rpm", int, 2400, "Requests per minute per admin key (0 = unlimited)"),
    Setting("key_default_expiry_days", int, 0, "Lifetime of new keys without "
            "expiresInDays (0 = none)"),
    Setting("transaction_timeout_ms", int, 60_000, "An open transaction ends (rolled "
            "back) after this"),
    Setting("transactions_per_key", int, 16, "Open transactions one key may hold at once"),
    Setting("transaction_steps", int, 10_000, "Writes one transaction may buffer"),
    Setting("memory_max_facts", int, 100_000, "Facts of a tenant beyond which "
            "/memory/decay evicts the least salient"),
    Setting("feed_keepalive_ms", int, 15_000, "Interval of keepalives (and log reads) "
            "on live feeds"),
    Setting("feeds_per_key", int, 8, "Live feeds (/memory/events) one key may hold open"),
    # extraction (issue 19): README "From conversation to facts"
    Setting("llm_provider", str, "none", "LLM for extraction and synthesis: none, openai "
            "(any OpenAI-compatible server) or anthropic"),
    Setting("llm_model", str, "", "Model name the provider is asked for (required with a "
            "provider)"),
    Setting("llm_base_url", str, "", "Base URL of the provider's API (Ollama: "
            "http://localhost:11434/v1); empty = the vendor's own"),
    Setting("llm_api_key", str, None, "API key sent to the provider (optional for a local "
            "OpenAI-compatible server)"),
    Setting("llm_timeout_ms", int, 30_000, "Longest wait for one LLM reply"),
    Setting("llm_max_tokens", int, 2048, "Most tokens one LLM reply may use"),
    Setting("llm_request_tokens", int, 32_000, "Token budget of one request over all its "
            "LLM calls (prompts estimated at 4 characters a token, plus replies)"),
    Setting("llm_calls_per_minute", int, 60, "Requests that call the LLM per minute per "
            "key, or per client address with auth off (0 = unlimited)"),
)

_BY_NAME = {s.name: s for s in SETTINGS}
MIN_BOOTSTRAP_PASSWORD_CHARS = 16


@dataclass(frozen=True, slots=True)
class Settings:
    """The resolved configuration of one server or CLI run."""

    host: str = "127.0.0.1"
    port: int = 9300
    data_dir: Path = Path("./data")
    master_key: str | None = field(default=None, repr=False)
    store: str = field(default="", repr=False)
    store_pool_size: int = 10
    workers: int = 1
    backup_retention: int = 7
    max_body_bytes: int = 10 * 1024 * 1024
    max_bulk_facts: int = 10_000
    snapshot_every: int = 10_000
    memory_budget_mb: int = 0

    verify_interval_s: int = 21_600
    salience_half_life_ms: int = 3_600_000
    uses_flush_ms: int = 2_000
    context_sessions: int = 1000
    plan_cache_size: int = 4096
    plan_cache_per_tenant: int = 256
    query_max_rows: int = 1_000_000
    query_timeout_ms: int = 10_000
    query_max_answers: int = 100_000
    query_workers: int = 4
    mcp_sessions: int = 256
    mcp_sessions_per_key: int = 32
    mcp_sessions_per_tenant: int = 64
    mcp_session_idle_s: int = 3600
    mcp_keepalive_ms: int = 15_000
    log_format: str = "text"
    log_level: str = "INFO"
    log_file: Path | None = None
    auth: str = "off"
    allow_insecure: bool = False
    admin_key: str | None = field(default=None, repr=False)
    bootstrap_user: str = "admin"
    bootstrap_password: str | None = field(default=None, repr=False)
    metrics_public: bool = True
    cors_origins: str = ""
    trusted_proxies: str = ""
    auth_failures_per_minute: int = 20
    auth_lockout_s: int = 60
    auth_checks: int = 4
    auth_checks_per_client: int = 2
    rate_limit_reader_rpm: int = 600
    rate_limit_writer_rpm: int = 1200
    rate_limit_admin_rpm: int = 2400
    key_default_expiry_days: int = 0
    transaction_timeout_ms: int = 60_000
    transactions_per_key: int = 16
    transaction_steps: int = 10_000
    memory_max_facts: int = 100_000
    feed_keepalive_ms: int = 15_000
    feeds_per_key: int = 8
    llm_provider: str = "none"
    llm_model: str = ""
    llm_base_url: str = ""
    llm_api_key: str | None = field(default=None, repr=False)
    llm_timeout_ms: int = 30_000
    llm_max_tokens: int = 2048
    llm_request_tokens: int = 32_000
    llm_calls_per_minute: int = 60

    def replace(self, **changes: Any) -> Settings:
        """Return a copy with ``changes`` applied (after type conversion)."""
        return dataclasses.replace(
            self, **{k: _convert(_setting(k), v) for k, v in changes.items()}
        )


def _setting(name: str) -> Setting:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise StartupError(f"unknown setting: {name}") from None


def _convert(setting: Setting, value: Any) -> Any:
    if value is None:
        return None
    try:
        if setting.type is bool:
            return _convert_bool(value)
        if setting.type is int:
            return int(value)
        if setting.type is Path:
            return Path(value)
        return str(value)
    except (TypeError, ValueError):
        env = "NOCTURNUS_" + setting.name.upper()
        raise StartupError(
            f"setting {setting.name} ({env}) must be {setting.type.__name__}, got {value!r}"
        ) from None


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _convert_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(word)


def load_settings(
    overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Resolve settings from defaults, ``NOCTURNUS_*`` env vars, then ``overrides``.

    The original product's names (``PORT``, ``STORAGE_DIR``, ``AUTH_ENABLED``...: see
    :mod:`nocturnus.legacy_env`) stand in for ours that are not set.

    Only env vars naming a declared setting are read; other ``NOCTURNUS_*`` variables
    belong to other subsystems (auth, logging) which read them themselves.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name, (source, fallback) in fallback_values(env).items():
        try:
            values[name] = _convert(_setting(name), fallback)
        except StartupError as e:
            raise StartupError(f"{source}, the original's name: {e}") from None
    for setting in SETTINGS:
        raw = env.get("NOCTURNUS_" + setting.name.upper())
        if raw is not None and raw != "":
            values[setting.name] = _convert(setting, raw)
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = _convert(_setting(name), value)
    settings = Settings(**values)
    if not 0 < settings.port < 65536:
        raise StartupError(f"port must be between 1 and 65535, got {settings.port}")
    if settings.auth not in ("off", "on"):
        raise StartupError(
            f"setting auth (NOCTURNUS_AUTH) must be off or on, got {settings.auth!r}"
        )
    for name in ("workers", "mcp_sessions", "mcp_sessions_per_key", "mcp_sessions_per_tenant"):
        if getattr(settings, name) < 1:
            raise StartupError(f"{name} must be at least 1, got {getattr(settings, name)}")
    if settings.query_workers < 1:
        raise StartupError(f"query_workers must be at least 1, got {settings.query_workers}")
    password = settings.bootstrap_password
    if password is not None and len(password) < MIN_BOOTSTRAP_PASSWORD_CHARS:
        raise StartupError(
            "bootstrap_password (NOCTURNUS_BOOTSTRAP_PASSWORD) must have at least "
            f"{MIN_BOOTSTRAP_PASSWORD_CHARS} characters"
        )
    if settings.auth_checks < 1:
        raise StartupError(f"auth_checks must be at least 1, got {settings.auth_checks}")
    if settings.auth_checks_per_client < 0:
        raise StartupError(
            f"auth_checks_per_client must be at least 0, got {settings.auth_checks_per_client}"
        )
    if settings.memory_budget_mb < 0:
        raise StartupError(
            f"memory_budget_mb must be at least 0 (0 = no budget), got "
            f"{settings.memory_budget_mb}"
        )
    if settings.verify_interval_s < 0:
        raise StartupError(
            f"verify_interval_s must be at least 0, got {settings.verify_interval_s}"
        )
    if settings.uses_flush_ms < 0:
        raise StartupError(
            f"uses_flush_ms must be at least 0 (0 = only with writes), got "
            f"{settings.uses_flush_ms}"
        )
    if settings.mcp_session_idle_s < 0:
        raise StartupError(
            f"mcp_session_idle_s must be at least 0, got {settings.mcp_session_idle_s}"
        )
    # Sanic drops a response that sends nothing for RESPONSE_TIMEOUT (60 s): keepalives
    # must come well before that or idle SSE streams get cut.
    if not 10 <= settings.mcp_keepalive_ms <= 50_000:
        raise StartupError(
            f"mcp_keepalive_ms must be between 10 and 50000, got {settings.mcp_keepalive_ms}"
        )
    _check_llm(settings)
    return settings


LLM_PROVIDERS = ("none", "openai", "anthropic")


def _check_llm(settings: Settings) -> None:
    """:raises StartupError: an unknown provider, a provider without a model, a vendor
    endpoint without a key, or limits that leave no room for a reply."""
    provider = settings.llm_provider
    if provider not in LLM_PROVIDERS:
        raise StartupError(
            f"setting llm_provider (NOCTURNUS_LLM_PROVIDER) must be one of "
            f"{', '.join(LLM_PROVIDERS)}, got {provider!r}"
        )
    if provider == "none":
        return
    if not settings.llm_model:
        raise StartupError(f"NOCTURNUS_LLM_MODEL is required with llm_provider {provider}")
    # A local OpenAI-compatible server (Ollama, vLLM, llama.cpp) needs no key; the
    # vendors' own endpoints always do.
    if not settings.llm_api_key and (provider == "anthropic" or not settings.llm_base_url):
        raise StartupError(
            f"NOCTURNUS_LLM_API_KEY is required with llm_provider {provider}"
            + ("" if provider == "anthropic" else " unless NOCTURNUS_LLM_BASE_URL is set")
        )
    for name in ("llm_timeout_ms", "llm_max_tokens", "llm_request_tokens"):
        if getattr(settings, name) < 1:
            raise StartupError(f"{name} must be at least 1, got {getattr(settings, name)}")
    if settings.llm_calls_per_minute < 0:
        raise StartupError(
            f"llm_calls_per_minute must be at least 0, got {settings.llm_calls_per_minute}"
        )
