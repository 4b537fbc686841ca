"""Upstream choice and failover order, and the circuit breaker, with a fake clock."""

from __future__ import annotations

from collections.abc import Sequence

from tiergate.clock import FakeClock
from tiergate.engines.upstream_config import UpstreamConfig
from tiergate.engines.upstream_pool import CircuitBreaker, UpstreamPool


def _upstream(name: str, priority: int = 0, weight: float = 1.0, slots: int = 4) -> UpstreamConfig:
    return UpstreamConfig(
        name=name,
        base_url=f"http://{name}/v1",
        model="m",
        priority=priority,
        weight=weight,
        max_concurrency=slots,
    )


def _first(weights: Sequence[float]) -> int:
    return 0


def _heaviest(weights: Sequence[float]) -> int:
    return max(range(len(weights)), key=lambda i: weights[i])


def test_the_breaker_opens_after_threshold_failures_in_a_row() -> None:
    breaker = CircuitBreaker(threshold=3, cooldown=5)
    breaker.on_failure(0)
    breaker.on_failure(0)
    breaker.on_success()  # a success in between resets the count
    breaker.on_failure(0)
    breaker.on_failure(0)
    assert breaker.allows(0)
    breaker.on_failure(0)
    assert not breaker.allows(1)
    assert not breaker.up


def test_after_the_cooldown_one_trial_passes_and_its_success_closes_the_circuit() -> None:
    breaker = CircuitBreaker(threshold=1, cooldown=5)
    breaker.on_failure(10)
    assert not breaker.allows(14.9)
    assert breaker.allows(15)
    breaker.on_attempt()
    assert not breaker.allows(15.1)  # only one trial at a time
    breaker.on_success()
    assert breaker.up and breaker.allows(15.2)


def test_a_failed_trial_opens_the_circuit_for_another_cooldown() -> None:
    breaker = CircuitBreaker(threshold=3, cooldown=5)
    for _ in range(3):
        breaker.on_failure(0)
    assert breaker.allows(5)
    breaker.on_attempt()
    breaker.on_failure(5)
    assert not breaker.allows(9)
    assert breaker.allows(10)


def test_lower_priority_numbers_are_tried_first_and_the_rest_are_failover_targets() -> None:
    pool = UpstreamPool(
        [_upstream("backup", priority=1), _upstream("main", priority=0), _upstream("last", priority=2)],
        clock=FakeClock(),
        pick=_first,
    )
    assert [s.config.name for s in pool.order()] == ["main", "backup", "last"]


def test_an_open_circuit_takes_an_upstream_out_until_its_cooldown_ends() -> None:
    clock = FakeClock()
    pool = UpstreamPool(
        [_upstream("a"), _upstream("b", priority=1)], clock=clock, failure_threshold=1, cooldown=5
    )
    pool.states[0].breaker.on_failure(clock.monotonic())
    assert [s.config.name for s in pool.order()] == ["b"]
    clock.advance(5)
    assert [s.config.name for s in pool.order()] == ["a", "b"]


def test_every_circuit_open_leaves_nothing_to_try() -> None:
    clock = FakeClock()
    pool = UpstreamPool([_upstream("a"), _upstream("b")], clock=clock, failure_threshold=1, cooldown=5)
    for state in pool.states:
        state.breaker.on_failure(clock.monotonic())
    assert pool.order() == []


def test_within_a_priority_the_pick_is_weighted_by_weight_and_spare_room() -> None:
    pool = UpstreamPool(
        [_upstream("small", weight=1), _upstream("big", weight=3)], clock=FakeClock(), pick=_heaviest
    )
    assert pool.order()[0].config.name == "big"
    pool.states[1].in_flight = 3  # big: weight 3 x 1 free slot; small: 1 x 4 free slots
    assert pool.order()[0].config.name == "small"


def test_a_full_upstream_goes_after_those_with_room() -> None:
    pool = UpstreamPool([_upstream("a", slots=1), _upstream("b", slots=1)], clock=FakeClock(), pick=_first)
    pool.states[0].in_flight = 1
    assert [s.config.name for s in pool.order()] == ["b", "a"]


def test_weighted_picks_follow_the_weights_over_many_requests() -> None:
    pool = UpstreamPool([_upstream("a", weight=1), _upstream("b", weight=3)], clock=FakeClock())
    firsts = [pool.order()[0].config.name for _ in range(4000)]
    assert 0.7 < firsts.count("b") / len(firsts) < 0.8


def test_slots_are_the_sum_of_the_upstreams_concurrency() -> None:
    pool = UpstreamPool([_upstream("a", slots=3), _upstream("b", slots=5)], clock=FakeClock())
    assert pool.slots == 8


def test_saturated_only_when_every_live_upstream_reports_too_many_waiting() -> None:
    clock = FakeClock()
    pool = UpstreamPool([_upstream("a"), _upstream("b")], clock=clock, failure_threshold=1, cooldown=5)
    assert not pool.saturated()  # unknown load is not saturation
    pool.states[0].waiting = 2
    assert not pool.saturated()
    pool.states[1].waiting = 1
    assert pool.saturated()
    pool.states[1].waiting = 0
    pool.states[1].breaker.on_failure(clock.monotonic())  # b is down: only a counts
    assert pool.saturated()


def test_backoff_doubles_and_is_capped() -> None:
    pool = UpstreamPool([_upstream("a")], clock=FakeClock())
    assert [pool.backoff(n, 0.05) for n in (0, 1, 2, 3)] == [0.0, 0.05, 0.1, 0.2]
    assert pool.backoff(10, 0.05) == 1.0
