"""Our tier -> each upstream kind's native field (the table in docs/tiers.md)."""

from __future__ import annotations

import pytest

from tiergate.engines.tier_mapping import KINDS, tier_fields


@pytest.mark.parametrize("kind", ["vllm", "sglang"])
def test_vllm_and_sglang_get_widely_spaced_priorities_lower_first(kind: str) -> None:
    values = [tier_fields(kind, tier)["priority"] for tier in ("performance", "on_demand", "flex", "batch")]
    assert values == [-100, 0, 100, 200]


def test_openai_gets_its_own_service_tier_names() -> None:
    assert [tier_fields("openai", t) for t in ("performance", "on_demand", "flex", "batch")] == [
        {"service_tier": "priority"},
        {"service_tier": "default"},
        {"service_tier": "flex"},
        {"service_tier": "flex"},
    ]


@pytest.mark.parametrize("kind", ["groq", "tiergate"])
def test_groqcloud_gets_its_tier_and_batch_lines_go_on_demand(kind: str) -> None:
    assert tier_fields(kind, "performance") == {"service_tier": "performance"}
    assert tier_fields(kind, "flex") == {"service_tier": "flex"}
    # GroqCloud's synchronous API has no batch tier, and its flex may refuse with 498.
    assert tier_fields(kind, "batch") == {"service_tier": "on_demand"}


@pytest.mark.parametrize("kind", ["llama-server", "ollama", "generic"])
def test_servers_without_tiers_get_nothing(kind: str) -> None:
    assert all(tier_fields(kind, t) == {} for t in ("performance", "on_demand", "flex", "batch"))


def test_every_kind_is_mapped_for_every_tier() -> None:
    for kind in KINDS:
        for tier in ("performance", "on_demand", "flex", "batch"):
            assert isinstance(tier_fields(kind, tier), dict)
