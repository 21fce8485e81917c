"""The one interface every LLM sits behind, and the provider a server is configured with.

A provider turns one :class:`Ask` (instructions, the text, the JSON schema the reply must
follow) into one :class:`Reply` (the parsed JSON, or ``None`` when the model wrote
something else, and the tokens used). It never retries and never judges the content:
checking the reply is the extractor's job, so every vendor is held to the same rules.
Vendor failures become the project's errors: :class:`~nocturnus.errors.LlmTimeout`,
:class:`~nocturnus.errors.LlmRateLimited`, :class:`~nocturnus.errors.LlmFailed`.

The vendors' SDKs are an optional extra (``pip install 'nocturnus[llm]'``), imported only
when a provider is configured.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

import orjson

from nocturnus.errors import LlmFailed, LlmRateLimited, LlmTimeout, StartupError
from nocturnus.settings import Settings


@dataclass(frozen=True, slots=True)
class LlmConfig:
    """``NOCTURNUS_LLM_*``: which provider and model, where, and the limits of a call."""

    provider: str = "none"
    model: str = ""
    base_url: str = ""
    api_key: str | None = None
    timeout_ms: int = 30_000
    max_tokens: int = 2048

    @classmethod
    def of(cls, settings: Settings) -> LlmConfig:
        """The ``NOCTURNUS_LLM_*`` settings."""
        return cls(
            settings.llm_provider,
            settings.llm_model,
            settings.llm_base_url,
            settings.llm_api_key,
            settings.llm_timeout_ms,
            settings.llm_max_tokens,
        )


@dataclass(frozen=True, slots=True)
class Ask:
    """One call: ``system`` instructions, the ``user`` text, and the reply's JSON schema
    (``schema_name`` names it for the vendors that want a name, e.g. a tool)."""

    system: str
    user: str
    schema: dict[str, Any]
    schema_name: str
    max_tokens: int


@dataclass(frozen=True, slots=True)
class Reply:
    """What the model answered: ``data`` is its JSON (``None`` when it wrote anything
    else), ``refusal`` the vendor's refusal text if it declined, and the tokens used."""

    data: Any
    input_tokens: int
    output_tokens: int
    refusal: str | None = None
    problem: str | None = None
    """Why ``data`` is ``None`` (not JSON, cut off at ``max_tokens``…), for the retry."""


class Provider(Protocol):
    """An LLM reached through its vendor's SDK."""

    name: str
    model: str

    async def complete(self, ask: Ask) -> Reply:
        """Send ``ask``; the reply as it came.

        :raises LlmTimeout: no answer within the configured timeout.
        :raises LlmRateLimited: the vendor's rate limit (its 429).
        :raises LlmFailed: unreachable, or any other error status.
        """

    async def close(self) -> None:
        """Release the SDK client's connections."""


_MODULES = {
    "openai": ("nocturnus.service.extraction.openai_chat", "openai"),
    "anthropic": ("nocturnus.service.extraction.anthropic_messages", "anthropic"),
}


def provider_of(config: LlmConfig) -> Provider | None:
    """The configured provider, or ``None`` for ``none``.

    :raises StartupError: the vendor's SDK is not installed.
    """
    if config.provider == "none":
        return None
    module_name, sdk = _MODULES[config.provider]
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise StartupError(
            f"llm_provider {config.provider} needs the {sdk!r} package: "
            f"pip install 'nocturnus[llm]' ({e})"
        ) from None
    provider: Provider = module.make(config)
    return provider


@contextmanager
def vendor_errors(sdk: ModuleType, vendor: str, timeout_ms: int) -> Iterator[None]:
    """Turn an SDK's exceptions into the project's errors.

    Both vendors' SDKs name their errors alike (``APITimeoutError``, ``RateLimitError``,
    ``APIStatusError``, ``APIConnectionError``), so one mapping serves both. Messages
    name the vendor and the status, never the request's content.
    """
    try:
        yield
    except sdk.APITimeoutError:
        raise LlmTimeout(
            f"{vendor} did not answer within {timeout_ms} ms", {"provider": vendor}
        ) from None
    except sdk.RateLimitError as e:
        raise LlmRateLimited(
            f"{vendor} refused the call for its rate limit; try again later",
            _retry_after_s(e.response.headers.get("retry-after")),
            {"provider": vendor},
        ) from None
    except sdk.APIStatusError as e:
        raise LlmFailed(
            f"{vendor} answered HTTP {e.status_code}",
            {"provider": vendor, "status": e.status_code},
        ) from None
    except sdk.APIConnectionError:
        raise LlmFailed(f"{vendor} could not be reached", {"provider": vendor}) from None


def _retry_after_s(header: str | None) -> int:
    """Seconds of a ``Retry-After`` header given in seconds (1 when absent or a date)."""
    try:
        return max(1, math.ceil(float(header or "")))
    except ValueError:
        return 1


def parse_json(text: str | None) -> tuple[Any, str | None]:
    """(value, None) for a JSON text, else (None, why); a surrounding Markdown code fence
    (which local models often add despite being asked for JSON) is dropped first."""
    if not text or not text.strip():
        return None, "the reply was empty"
    body = text.strip()
    if body.startswith("```"):
        body = body.split("\n", 1)[1] if "\n" in body else ""
        body = body.rsplit("```", 1)[0]
    try:
        return orjson.loads(body), None
    except orjson.JSONDecodeError as e:
        return None, f"the reply was not valid JSON ({e})"
