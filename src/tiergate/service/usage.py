"""Usage of one chat request as the API reports it: token counts and the times we measured."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Usage:
    prompt_tokens: int
    completion_tokens: int = 0
    queue_time: float = 0.0
    prompt_time: float = 0.0
    completion_time: float = 0.0
    reasoning_tokens: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "queue_time": round(self.queue_time, 6),
            "prompt_tokens": self.prompt_tokens,
            "prompt_time": round(self.prompt_time, 6),
            "completion_tokens": self.completion_tokens,
            "completion_time": round(self.completion_time, 6),
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "total_time": round(self.prompt_time + self.completion_time, 6),
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        }
