"""The Engine protocol: the one seam between the request road and whatever runs the model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry: what /models reports and how to load it."""

    id: str
    engine: str = "llamacpp"
    # For llamacpp: a path, or "package:<name>" for a chunked registry package set (see engines/weights.py).
    source: str = ""
    sha256: str | None = None
    context_window: int = 32768
    max_completion_tokens: int = 32768
    owned_by: str = "tiergate"
    aliases: tuple[str, ...] = ()
    created: int = 1_700_000_000
    reasoning: bool = False
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    # A GBNF grammar constraining the output (JSON mode, schemas, tool calls), or None.
    grammar: str | None = None


@dataclass(frozen=True)
class PreparedPrompt:
    """The chat template applied and tokenized: exactly what the engine will prefill."""

    text: str
    tokens: list[int]


@dataclass(frozen=True)
class TokenDelta:
    """Text produced by one or more tokens. Engines stop at EOS (finish 'stop') or max_tokens ('length')."""

    text: str
    tokens: int
    finish_reason: str | None = None


class Engine(Protocol):
    spec: ModelSpec

    @property
    def slots(self) -> int:
        """How many sequences may generate at once; the scheduler owns them."""
        ...

    def prepare(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        continue_final_message: bool = False,
    ) -> PreparedPrompt:
        """Apply the model's own chat template and tokenize. Pure CPU, fast.

        continue_final_message: the last message is an assistant prefill; the prompt ends inside it
        (no end-of-turn marker, no new assistant header) so generation continues that text.
        """
        ...

    def generate(
        self, prompt: PreparedPrompt, params: SamplingParams, slot: int
    ) -> AsyncIterator[TokenDelta]:
        """Stream deltas on `slot`. Cancelling the iterator (aclose) stops generation at once."""
        ...

    async def close(self) -> None: ...
