"""Prometheus metrics, one registry per app (no module globals, so tests can build many apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_QUEUE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "tiergate_requests_total", "HTTP requests by route and status", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "tiergate_request_duration_seconds",
            "Time from request to last byte",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "tiergate_time_to_first_token_seconds",
            "Time from request to the first generated token",
            ["model", "tier"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens_generated = Counter(
            "tiergate_tokens_generated_total", "Completion tokens generated", ["model"], registry=r
        )
        self.prompt_tokens = Counter(
            "tiergate_prompt_tokens_total", "Prompt tokens processed", ["model"], registry=r
        )
        self.admitted = Counter("tiergate_tier_admitted_total", "Requests given a slot", ["tier"], registry=r)
        self.queued = Counter(
            "tiergate_tier_queued_total", "Requests that had to wait for a slot", ["tier"], registry=r
        )
        self.rejected = Counter(
            "tiergate_tier_rejected_total",
            "Requests refused by tier (429, 498)",
            ["tier", "status"],
            registry=r,
        )
        self.queue_time = Histogram(
            "tiergate_tier_queue_time_seconds",
            "Wait for a slot",
            ["tier"],
            buckets=_QUEUE_BUCKETS,
            registry=r,
        )
        self.slots_busy = Gauge("tiergate_slots_busy", "Slots in use", ["model", "tier"], registry=r)
        self.cancelled = Counter(
            "tiergate_requests_cancelled_total", "Clients that left mid-request (499)", ["route"], registry=r
        )
        self.upstream_requests = Counter(
            "tiergate_upstream_requests_total",
            "Chat requests sent to upstreams, by outcome (ok, rejected 4xx, failed, broken mid-stream)",
            ["model", "upstream", "outcome"],
            registry=r,
        )
        self.upstream_up = Gauge(
            "tiergate_upstream_up",
            "1 while the upstream's circuit is closed",
            ["model", "upstream"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
