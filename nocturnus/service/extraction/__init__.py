"""From conversation to facts (issue 19): an LLM, or the text syntax, turns text into facts.

``provider`` is the one small interface every LLM sits behind (``openai_chat``,
``anthropic_messages``); ``prompts`` reads the versioned prompt files; ``extractor``
asks a provider for facts and checks its reply (retried once, never stored half-valid);
``fallback`` reads facts written in the text syntax when no LLM is configured;
``remember`` stores what was found (idempotent, with provenance, under the tenant's
conflict strategy); ``turns`` is ``POST /context``'s conversation loop and ``synthesis``
answers a question from the knowledge base.
"""
