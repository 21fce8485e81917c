"""Asking a provider for structured output, and holding it to the contract.

Every reply is checked by the caller's ``read`` function (for facts: the same field
schemas and conversion as ``POST /tell``). A reply that fails — not JSON, cut off, a
refusal, or any item breaking the schema — is retried once with the reason appended;
a second failure gives a ``warning`` and nothing (never the valid half of a reply).
Provider errors (timeout, rate limit, unreachable) are raised for the caller to report.
Each request carries a :class:`Budget` of tokens shared by all its calls.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from nocturnus.errors import LlmNotConfigured, NocturnusError, PayloadTooLarge
from nocturnus.service.commands import TeachRule, TellFact
from nocturnus.service.extraction.prompts import EXTRACT, prompt
from nocturnus.service.extraction.provider import Ask, Provider, Reply

T = TypeVar("T")

CHARS_PER_TOKEN = 4
"""The prompt estimate before a call (replies report what they really used)."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """An extracted fact as a ``/tell`` command, and the turn it came from (if known)."""

    fact: TellFact
    turn: int | None = None


@dataclass(frozen=True, slots=True)
class Found:
    """What one text gave: facts, and rules when they were asked for."""

    facts: tuple[Candidate, ...] = ()
    rules: tuple[TeachRule, ...] = ()


class Contract(Protocol):
    """How replies and text-syntax facts are checked (the API layer owns the schemas).

    ``schema`` is the JSON schema a reply must follow; :meth:`read_reply` checks a reply
    against it and converts it; :meth:`read_fact` checks one ``/tell`` body.
    """

    schema: dict[str, Any]

    def read_reply(self, data: Any, turns: int) -> Found:
        """The facts and rules of a reply over ``turns`` numbered turns.

        :raises ValidationError: anything in it breaks the schema.
        """

    def read_fact(self, body: dict[str, Any], field: str) -> TellFact:
        """A ``/tell`` body as a command.

        :raises ValidationError: naming ``field``.
        """


@dataclass(frozen=True, slots=True)
class Source:
    """Text to extract from: its pieces (a conversation's turns, or one text) and an
    optional hint (earlier turns, or the caller's context) that is read, not extracted."""

    pieces: tuple[str, ...]
    hint: str | None = None
    is_conversation: bool = False
    """The pieces are turns: a fact's provenance names the turn it came from."""

    def user_text(self, with_rules: bool) -> str:
        """The text as the model reads it: turns numbered when there are several."""
        if len(self.pieces) == 1:
            body = self.pieces[0]
        else:
            body = "\n".join(f"[{i}] {piece}" for i, piece in enumerate(self.pieces))
        parts = []
        if self.hint:
            parts.append(f"Context (already known; extract nothing from it):\n{self.hint}")
        parts.append(f"Text:\n{body}")
        parts.append("Also extract rules." if with_rules else 'Extract no rules ("rules": []).')
        return "\n\n".join(parts)

    def digest(self, turn: int | None) -> str:
        """SHA-256 (hex) of the piece ``turn`` (of all pieces joined when ``None``)."""
        text = "\n".join(self.pieces) if turn is None else self.pieces[turn]
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(slots=True)
class Budget:
    """The tokens one request may spend over all its LLM calls."""

    limit: int
    spent: int = 0

    def admit(self, estimate: int) -> bool:
        """Whether a call estimated at ``estimate`` tokens still fits."""
        return self.spent + estimate <= self.limit

    def spend(self, tokens: int) -> None:
        """Count tokens a call used."""
        self.spent += tokens


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One LLM call as metrics see it: no content, only its outcome and its cost."""

    provider: str
    operation: str
    outcome: str
    seconds: float
    input_tokens: int
    output_tokens: int


Observer = Callable[[CallRecord], None]


@dataclass(frozen=True, slots=True)
class Structured:
    """A checked reply (``value``), or ``None`` with the ``warning`` saying why."""

    value: Any
    warning: str | None


@dataclass(frozen=True, slots=True)
class Extraction:
    """What an extraction found, who found it, and what went wrong short of an error."""

    found: Found
    provider: str
    model: str | None
    prompt: str | None
    warning: str | None = None


@dataclass(slots=True)
class Extractor:
    """The server's extraction and structured-answer service (one per app).

    ``provider`` is ``None`` without an LLM: :meth:`extract` and :meth:`ask` then raise
    :class:`LlmNotConfigured`, and callers that have a way without one use it
    (``fallback.extract`` reads text-syntax facts; a goal question needs no LLM).
    """

    provider: Provider | None
    max_tokens: int = 2048
    observe: Observer = field(default=lambda record: None)

    @property
    def configured(self) -> bool:
        """Whether an LLM is configured."""
        return self.provider is not None

    def require(self) -> Provider:
        """:raises LlmNotConfigured: no provider."""
        if self.provider is None:
            raise LlmNotConfigured(
                "No LLM is configured: set NOCTURNUS_LLM_PROVIDER and NOCTURNUS_LLM_MODEL"
            )
        return self.provider

    async def ask(
        self,
        operation: str,
        system: str,
        user: str,
        schema: dict[str, Any],
        read: Callable[[Any], T],
        budget: Budget,
    ) -> Structured:
        """A reply following ``schema``, checked by ``read``; retried once on failure.

        :raises LlmNotConfigured: no provider.
        :raises PayloadTooLarge: the first call does not fit the budget.
        :raises LlmTimeout, LlmRateLimited, LlmFailed: the provider's errors.
        """
        provider = self.require()
        problem = None
        for attempt in (1, 2):
            text = user if problem is None else _retry_text(user, problem)
            estimate = (len(system) + len(text)) // CHARS_PER_TOKEN + self.max_tokens
            if not budget.admit(estimate):
                if attempt == 1:
                    raise PayloadTooLarge(
                        f"the text needs about {estimate} tokens; "
                        f"NOCTURNUS_LLM_REQUEST_TOKENS allows {budget.limit - budget.spent} "
                        "more in this request",
                        {"estimate": estimate, "budget": budget.limit},
                    )
                return Structured(None, f"{problem}; no token budget left to retry")
            started = time.perf_counter()
            reply = await self._call(
                provider, operation, Ask(system, text, schema, operation, self.max_tokens)
            )
            # a local server may not report usage: the estimate stands in for it
            budget.spend(reply.input_tokens + reply.output_tokens or estimate)
            problem = _problem_of(reply)
            value = None
            if problem is None:
                try:
                    value = read(reply.data)
                except NocturnusError as e:
                    problem = f"the reply broke the schema: {e.message}"
            self.observe(CallRecord(
                provider.name, operation, "ok" if problem is None else "invalid",
                time.perf_counter() - started, reply.input_tokens, reply.output_tokens,
            ))
            if problem is None:
                return Structured(value, None)
        return Structured(
            None,
            f"the model's reply was invalid twice ({problem}); nothing was taken from it",
        )

    async def _call(self, provider: Provider, operation: str, ask: Ask) -> Reply:
        """One provider call; a failure is counted (by its code, never its content)."""
        started = time.perf_counter()
        try:
            return await provider.complete(ask)
        except NocturnusError as e:
            self.observe(CallRecord(
                provider.name, operation, e.code.lower(), time.perf_counter() - started, 0, 0
            ))
            raise

    async def extract(
        self, source: Source, contract: Contract, budget: Budget, *, rules: bool = False
    ) -> Extraction:
        """The facts (and rules, if asked) of ``source`` by the LLM.

        :raises LlmNotConfigured: no provider (see ``fallback.extract`` for that case).
        :raises PayloadTooLarge: the text does not fit the request's token budget.
        :raises LlmTimeout, LlmRateLimited, LlmFailed: the provider's errors.
        """
        provider = self.require()
        instructions = prompt(EXTRACT)
        turns = len(source.pieces)
        answer = await self.ask(
            "extract",
            instructions.text,
            source.user_text(rules),
            contract.schema,
            lambda data: contract.read_reply(data, turns),
            budget,
        )
        found = answer.value if answer.value is not None else Found()
        if not rules:
            found = Found(found.facts)
        warning = answer.warning
        if warning is None and not found.facts and not found.rules:
            warning = "the model found no facts in the text"
        return Extraction(found, provider.name, provider.model, instructions.name, warning)


def _problem_of(reply: Reply) -> str | None:
    if reply.refusal is not None:
        return f"the model refused ({reply.refusal[:200]})"
    if reply.data is None:
        return reply.problem or "the reply held no JSON"
    return None


def _retry_text(user: str, problem: str) -> str:
    return (
        f"{user}\n\nYour previous reply was rejected: {problem}. "
        "Answer again with JSON that follows the schema exactly."
    )
