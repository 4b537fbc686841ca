"""How fast an engine serves, learned from finished requests, so the scheduler can predict slot ends.

Flex must "succeed or fail quickly": when every slot is busy, waiting flex_wait for a slot that the
running requests cannot free in time only delays the 498. Each running request carries an expected
end (its remaining prompt and completion tokens at the engine's recent speed; an upper bound, since
a request may stop before max_tokens), and flex is refused at once when none ends within the wait.
"""

from __future__ import annotations


class ServiceSpeed:
    """Exponential moving averages of seconds per prompt token and per completion token."""

    def __init__(self, weight: float = 0.2) -> None:
        self.weight = weight
        self.prompt_seconds_per_token: float | None = None
        self.completion_seconds_per_token: float | None = None

    def observe(
        self, prompt_tokens: int, prompt_time: float, completion_tokens: int, completion_time: float
    ) -> None:
        if prompt_tokens > 0 and prompt_time > 0:
            self.prompt_seconds_per_token = self._blend(
                self.prompt_seconds_per_token, prompt_time / prompt_tokens
            )
        # The first token's time is in prompt_time; the rest decode during completion_time.
        if completion_tokens > 1 and completion_time > 0:
            per_token = completion_time / (completion_tokens - 1)
            self.completion_seconds_per_token = self._blend(self.completion_seconds_per_token, per_token)

    def remaining(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        """Seconds still needed for this work, or None before anything has been observed."""
        if self.completion_seconds_per_token is None:
            return None
        prefill = prompt_tokens * (self.prompt_seconds_per_token or 0.0)
        return prefill + max(completion_tokens, 0) * self.completion_seconds_per_token

    def _blend(self, current: float | None, sample: float) -> float:
        return sample if current is None else (1 - self.weight) * current + self.weight * sample
