"""The OpenAI chat completions API, through the ``openai`` SDK: OpenAI itself, and every
server that speaks it at another base URL (Ollama, vLLM, llama.cpp, LM Studio).

The reply's shape is asked for with ``response_format: json_schema``; servers that do
not enforce it still get the schema and the instructions, and the extractor checks
whatever comes back.
"""

from __future__ import annotations

import openai

from nocturnus.service.extraction.provider import (
    Ask,
    LlmConfig,
    Reply,
    parse_json,
    vendor_errors,
)

LOCAL_KEY = "not-needed"
"""Sent to a local server configured without a key: the SDK refuses to start without one,
and such servers ignore it."""


class OpenAiChat:
    """A :class:`~nocturnus.service.extraction.provider.Provider` over chat completions."""

    name = "openai"

    def __init__(self, config: LlmConfig) -> None:
        self.model = config.model
        self._timeout_ms = config.timeout_ms
        self._client = openai.AsyncOpenAI(
            api_key=config.api_key or LOCAL_KEY,
            base_url=config.base_url or None,
            timeout=config.timeout_ms / 1000,
            max_retries=0,  # the extractor decides what is retried
        )

    async def complete(self, ask: Ask) -> Reply:
        """One chat completion whose reply must follow ``ask.schema``."""
        with vendor_errors(openai, self.name, self._timeout_ms):
            completion = await self._client.chat.completions.create(
                model=self.model,
                messages=[
                    {"role": "system", "content": ask.system},
                    {"role": "user", "content": ask.user},
                ],
                response_format={
                    "type": "json_schema",
                    "json_schema": {"name": ask.schema_name, "schema": ask.schema},
                },
                max_tokens=ask.max_tokens,
                temperature=0,
            )
        usage = completion.usage
        tokens_in = usage.prompt_tokens if usage is not None else 0
        tokens_out = usage.completion_tokens if usage is not None else 0
        if not completion.choices:
            return Reply(None, tokens_in, tokens_out, problem="the reply had no choices")
        choice = completion.choices[0]
        message = choice.message
        if message.refusal:
            return Reply(None, tokens_in, tokens_out, refusal=message.refusal)
        if choice.finish_reason == "length":
            return Reply(
                None, tokens_in, tokens_out, problem="the reply was cut off at max_tokens"
            )
        data, problem = parse_json(message.content)
        return Reply(data, tokens_in, tokens_out, problem=problem)

    async def close(self) -> None:
        """Close the SDK's HTTP client."""
        await self._client.close()


def make(config: LlmConfig) -> OpenAiChat:
    """The provider for ``llm_provider = openai``."""
    return OpenAiChat(config)
