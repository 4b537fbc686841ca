"""Which upstream serves the next request, and which one next if it fails: pure logic, a clock injected.

Order of tries: upstreams whose circuit lets traffic through, lowest `priority` first; within one
priority, the first pick is weighted by `weight` and by spare concurrency (an upstream at its
`max_concurrency` goes after those with room), the rest follow as failover targets. An upstream whose
circuit is open is skipped until its cool-down ends (then one trial request may pass) or a health
check sees it answer again.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tiergate.clock import Clock
from tiergate.engines.upstream_config import UpstreamConfig


@dataclass
class CircuitBreaker:
    """closed (traffic flows) -> open after `threshold` failures in a row -> half-open after `cooldown`:
    one trial passes; its success closes the circuit, its failure opens it for another cool-down."""

    threshold: int
    cooldown: float
    state: str = "closed"
    failures: int = 0
    opened_at: float = 0.0
    trial_in_flight: bool = False

    def allows(self, now: float) -> bool:
        if self.state == "closed":
            return True
        if self.state == "open" and now - self.opened_at >= self.cooldown:
            self.state = "half_open"
            self.trial_in_flight = False
        return self.state == "half_open" and not self.trial_in_flight

    def on_attempt(self) -> None:
        if self.state == "half_open":
            self.trial_in_flight = True

    def on_success(self) -> None:
        self.state = "closed"
        self.failures = 0
        self.trial_in_flight = False

    def on_failure(self, now: float) -> None:
        self.failures += 1
        self.trial_in_flight = False
        if self.state == "half_open" or self.failures >= self.threshold:
            self.state = "open"
            self.opened_at = now

    @property
    def up(self) -> bool:
        return self.state == "closed"


@dataclass
class UpstreamState:
    """One upstream's live state: its circuit, requests in flight, the load it last reported."""

    config: UpstreamConfig
    breaker: CircuitBreaker
    in_flight: int = 0
    # Requests the upstream itself reports waiting (vLLM) or 1/0 for all slots busy (llama-server).
    waiting: int | None = None

    @property
    def has_room(self) -> bool:
        return self.in_flight < self.config.max_concurrency

    @property
    def saturated(self) -> bool:
        return self.waiting is not None and self.waiting > self.config.flex_max_waiting


class UpstreamPool:
    def __init__(
        self,
        upstreams: Sequence[UpstreamConfig],
        *,
        clock: Clock,
        failure_threshold: int = 3,
        cooldown: float = 5.0,
        pick: Callable[[Sequence[float]], int] | None = None,
    ) -> None:
        self.clock = clock
        self.states = [UpstreamState(u, CircuitBreaker(failure_threshold, cooldown)) for u in upstreams]
        self._pick = pick or _weighted_pick

    @property
    def slots(self) -> int:
        return sum(state.config.max_concurrency for state in self.states)

    def order(self) -> list[UpstreamState]:
        """Upstreams to try for one request, best first; empty when every circuit is open."""
        now = self.clock.monotonic()
        open_to_traffic = [s for s in self.states if s.breaker.allows(now)]
        ordered: list[UpstreamState] = []
        for priority in sorted({s.config.priority for s in open_to_traffic}):
            group = [s for s in open_to_traffic if s.config.priority == priority]
            roomy = [s for s in group if s.has_room]
            full = [s for s in group if not s.has_room]
            while roomy:
                weights = [s.config.weight * (s.config.max_concurrency - s.in_flight) for s in roomy]
                ordered.append(roomy.pop(self._pick(weights)))
            ordered.extend(sorted(full, key=lambda s: s.in_flight / s.config.max_concurrency))
        return ordered

    def saturated(self) -> bool:
        """Flex is refused: every upstream that could take traffic reports more waiting than allowed."""
        now = self.clock.monotonic()
        candidates = [s for s in self.states if s.breaker.allows(now)]  # a closed circuit allows
        return bool(candidates) and all(s.saturated for s in candidates)

    def backoff(self, attempt: int, base: float) -> float:
        """Seconds to wait before try number `attempt` (1 = the first retry): doubling, capped at 1 s."""
        return 0.0 if attempt <= 0 else min(base * (2 ** (attempt - 1)), 1.0)


def _weighted_pick(weights: Sequence[float]) -> int:
    total = sum(weights)
    point = random.random() * total
    for index, weight in enumerate(weights):
        point -= weight
        if point < 0:
            return index
    return len(weights) - 1
