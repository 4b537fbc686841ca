"""A scripted Engine for unit tests of one component: fixed output, optional delay, hang or failure."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from tiergate.engines.base import ModelSpec, PreparedPrompt, SamplingParams, TokenDelta


class ScriptedEngine:
    """Yields `pieces` (a list, or a count of "w0 ", "w1 ", ...) with `delay` seconds between them.

    `hold` (an Event) blocks generation until set, like a hung backend; `fail_after` raises after that
    many pieces, like a crashing one. `generations` counts generate() calls.
    """

    def __init__(
        self,
        spec: ModelSpec,
        pieces: list[str] | int = 2,
        *,
        delay: float = 0.0,
        fail_after: int | None = None,
    ) -> None:
        self.spec = spec
        self.pieces = pieces
        self.delay = delay
        self.fail_after = fail_after
        self.hold: asyncio.Event | None = None
        self.generations = 0
        self.fingerprint = "fp_scripted00"

    @property
    def slots(self) -> int:
        return 1

    def prepare(
        self, messages: list[dict[str, Any]], tools: Any = None, continue_final_message: bool = False
    ) -> PreparedPrompt:
        text = " ".join(m["content"] for m in messages)
        return PreparedPrompt(text, list(range(len(text.split()))))

    async def generate(
        self, prompt: PreparedPrompt, params: SamplingParams, slot: int
    ) -> AsyncIterator[TokenDelta]:
        self.generations += 1
        if self.hold is not None:
            await self.hold.wait()
        pieces = self.pieces if isinstance(self.pieces, list) else [f"w{i} " for i in range(self.pieces)]
        for index, piece in enumerate(pieces[: params.max_tokens]):
            if self.fail_after is not None and index >= self.fail_after:
                raise RuntimeError("secret internal detail: CUDA exploded")
            if self.delay:
                await asyncio.sleep(self.delay)
            yield TokenDelta(piece, 1)

    async def close(self) -> None:
        return None
