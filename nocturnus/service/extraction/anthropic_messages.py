"""Anthropic's Messages API, through the ``anthropic`` SDK.

The reply's shape is a tool the model must call (``tool_choice`` names it), whose
``input_schema`` is the schema asked for: the tool call's input is the reply.
"""

from __future__ import annotations

import anthropic

from nocturnus.service.extraction.provider import Ask, LlmConfig, Reply, vendor_errors


class AnthropicMessages:
    """A :class:`~nocturnus.service.extraction.provider.Provider` over Messages."""

    name = "anthropic"

    def __init__(self, config: LlmConfig) -> None:
        self.model = config.model
        self._timeout_ms = config.timeout_ms
        self._client = anthropic.AsyncAnthropic(
            api_key=config.api_key,
            base_url=config.base_url or None,
            timeout=config.timeout_ms / 1000,
            max_retries=0,  # the extractor decides what is retried
        )

    async def complete(self, ask: Ask) -> Reply:
        """One message whose reply is a forced call of the tool ``ask.schema_name``."""
        with vendor_errors(anthropic, self.name, self._timeout_ms):
            message = await self._client.messages.create(
                model=self.model,
                max_tokens=ask.max_tokens,
                system=ask.system,
                messages=[{"role": "user", "content": ask.user}],
                tools=[
                    {
                        "name": ask.schema_name,
                        "description": "Record the result; the only way to answer.",
                        "input_schema": ask.schema,
                    }
                ],
                tool_choice={"type": "tool", "name": ask.schema_name},
            )
        tokens_in = message.usage.input_tokens
        tokens_out = message.usage.output_tokens
        if message.stop_reason == "refusal":
            text = " ".join(b.text for b in message.content if b.type == "text")
            return Reply(None, tokens_in, tokens_out, refusal=text or "refused")
        for block in message.content:
            if block.type == "tool_use" and block.name == ask.schema_name:
                return Reply(block.input, tokens_in, tokens_out)
        problem = (
            "the reply was cut off at max_tokens"
            if message.stop_reason == "max_tokens"
            else f"the reply did not call the tool {ask.schema_name}"
        )
        return Reply(None, tokens_in, tokens_out, problem=problem)

    async def close(self) -> None:
        """Close the SDK's HTTP client."""
        await self._client.close()


def make(config: LlmConfig) -> AnthropicMessages:
    """The provider for ``llm_provider = anthropic``."""
    return AnthropicMessages(config)
