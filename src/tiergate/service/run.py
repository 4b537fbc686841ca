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
