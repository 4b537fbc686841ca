"""What every admitted chat request carries, whichever engine answers it: ids, tier, headers, plan.

ChatRun (service/chat.py, the embedded engine) and RemoteChatRun (service/chat_remote.py, an upstream)
add how the answer is produced; the routers, `complete()`, the Responses API and the batch runner only
use this surface plus `events()`, `finish()`, `usage`, `output` and `fingerprint`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from tiergate import ids
from tiergate.engines.base import ModelSpec
from tiergate.generation.output import OutputPlan
from tiergate.service.runtime import Runtime
from tiergate.service.usage import Usage
from tiergate.tiers.admission import Admitted, Who


@dataclass(kw_only=True)
class AdmittedRun:
    runtime: Runtime
    who: Who
    spec: ModelSpec
    admitted: Admitted
    started_at: float
    plan: OutputPlan = field(default_factory=OutputPlan)
    completion_id: str = field(default_factory=ids.completion_id)
    request_id: str = field(default_factory=ids.request_id)
    created: int = field(default_factory=lambda: int(time.time()))
    finish_reason: str | None = None
    usage: Usage = field(init=False)
    _finished: bool = False

    @property
    def tier(self) -> str:
        return self.admitted.tier

    @property
    def model(self) -> str:
        return self.spec.id

    @property
    def headers(self) -> dict[str, str]:
        return {**self.admitted.headers, "x-request-id": self.request_id}

    def _tool_finish_reason(self) -> str:
        """The finish_reason of an answer that made tool calls (legacy `functions` have their own)."""
        return "function_call" if self.plan.legacy_functions else "tool_calls"

    def _observe_ttft(self, now: float) -> None:
        self.runtime.metrics.ttft.labels(self.model, self.tier).observe(now - self.started_at)

    async def finish(self) -> None:
        """Free the slot and settle limits to the real usage; once, so it is safe from `finally` and
        from disconnects alike."""
        if self._finished:
            return
        self._finished = True
        await self._release()
        usage = self.usage
        metrics = self.runtime.metrics
        metrics.tokens_generated.labels(self.model).inc(usage.completion_tokens)
        metrics.prompt_tokens.labels(self.model).inc(usage.prompt_tokens)
        await self.runtime.admission.finish(
            self.who, self.admitted, usage.prompt_tokens + usage.completion_tokens
        )

    async def _release(self) -> None:
        """What the engine's road lets go of first (its connection, its speed sample)."""
